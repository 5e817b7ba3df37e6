/*
 * pause: the process that holds a pod's namespaces open (PID 1 of the sandbox).
 *
 * Our own, so the node needs no image from a registry. It does the two things a
 * sandbox's init must do: stay alive until told to stop (SIGTERM/SIGINT, which the
 * runtime sends on pod teardown), and reap children re-parented to it (with a
 * shared PID namespace, orphans of app containers land here and would stay zombies).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) {
    (void)sig;
    _exit(0);
}

static void on_child(int sig) {
    (void)sig;
    int saved = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved;
}

static void handle(int sig, void (*fn)(int)) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = fn;
    sa.sa_flags = SA_RESTART | (sig == SIGCHLD ? SA_NOCLDSTOP : 0);
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) != 0) {
        perror("pause: sigaction");
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        puts("tether-pause 1.0");
        return 0;
    }
    if (getpid() != 1) {
        /* Not fatal: useful to run by hand, but say why reaping may not happen. */
        fputs("pause: warning: not PID 1, orphans will not be re-parented here\n", stderr);
    }
    handle(SIGINT, on_stop);
    handle(SIGTERM, on_stop);
    handle(SIGCHLD, on_child);
    for (;;) {
        pause();
    }
}
