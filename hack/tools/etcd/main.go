// Command etcd is the etcd server, built from its Go module so the test cluster
// needs no release tarball (this machine reaches the Go module proxy, not GitHub).
// It is exactly upstream's server: etcdmain.Main is what upstream's own main calls.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
