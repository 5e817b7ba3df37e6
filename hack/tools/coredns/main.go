// Command coredns is the local cluster's DNS server, built from CoreDNS's Go module
// with only the plugins its Corefile uses (hack/cluster/manifests/Corefile). The
// upstream binary links every plugin, cloud SDKs included; a cluster that answers
// cluster.local and forwards the rest to the host's resolver needs none of them.
// Startup is upstream's own: coremain.Run is what upstream's main calls.
package main

import (
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/ready"

	"github.com/coredns/coredns/coremain"
)

func main() {
	coremain.Run()
}
