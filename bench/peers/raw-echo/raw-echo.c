/*
 * raw-echo: a TCP echo server, the floor of the comparison. It does what the kernel requires
 * and nothing else: one epoll loop, every read into one shared buffer, the bytes written
 * straight back. Output the peer is not reading yet is kept per connection, and reading from
 * that connection pauses until it drains (so memory stays bounded). An idle connection holds
 * no memory but its file descriptor.
 *
 * It echoes bytes, not frames: the load generator sends masked WebSocket frames (`switchboard
 * bench --raw`) and checks that they come back exactly as sent.
 *
 *   raw-echo HOST:PORT        e.g. raw-echo 127.0.0.1:9000 (port 0: any free port)
 *
 * Prints "listening on HOST:PORT" once it accepts connections.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE (512 * 1024)
#define MAX_EVENTS 1024

/* Output not yet written, per file descriptor; NULL for nearly every connection. */
struct pending {
    size_t len, off;
    char data[];
};

static struct pending **pending;
static size_t pending_cap;
static char buf[BUF_SIZE];

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void drop(int epfd, int fd) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    if ((size_t)fd < pending_cap) {
        free(pending[fd]);
        pending[fd] = NULL;
    }
    close(fd);
}

static void watch_fd(int epfd, int op, int fd, unsigned events) {
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (epoll_ctl(epfd, op, fd, &ev) < 0) die("epoll_ctl");
}

/* Writes what `fd` still owes its peer; returns 0 when all of it is out, 1 if some is left,
 * -1 on error. */
static int flush(int fd) {
    struct pending *p = pending[fd];
    while (p->off < p->len) {
        ssize_t n = write(fd, p->data + p->off, p->len - p->off);
        if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 1 : -1;
        p->off += (size_t)n;
    }
    free(p);
    pending[fd] = NULL;
    return 0;
}

static void readable(int epfd, int fd) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        drop(epfd, fd);
        return;
    }
    if (n < 0) return;
    ssize_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, buf + done, (size_t)(n - done));
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            drop(epfd, fd);
            return;
        }
        done += w;
    }
    if (done == n) return;
    /* The peer is not reading: keep the rest and stop reading until it is out. */
    if ((size_t)fd >= pending_cap) {
        size_t cap = pending_cap ? pending_cap : 1024;
        while (cap <= (size_t)fd) cap *= 2;
        pending = realloc(pending, cap * sizeof *pending);
        if (!pending) die("realloc");
        memset(pending + pending_cap, 0, (cap - pending_cap) * sizeof *pending);
        pending_cap = cap;
    }
    struct pending *p = malloc(sizeof *p + (size_t)(n - done));
    if (!p) die("malloc");
    p->len = (size_t)(n - done);
    p->off = 0;
    memcpy(p->data, buf + done, p->len);
    pending[fd] = p;
    watch_fd(epfd, EPOLL_CTL_MOD, fd, EPOLLOUT);
}

int main(int argc, char **argv) {
    if (argc != 2 || !strchr(argv[1], ':')) {
        fprintf(stderr, "usage: raw-echo HOST:PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    char host[64];
    const char *colon = strrchr(argv[1], ':');
    size_t hlen = (size_t)(colon - argv[1]);
    if (hlen >= sizeof host) hlen = sizeof host - 1;
    memcpy(host, argv[1], hlen);
    host[hlen] = 0;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "raw-echo: %s is not an IPv4 address\n", host);
        return 2;
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (lfd < 0) die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(lfd, SOMAXCONN) < 0) die("listen");
    socklen_t alen = sizeof addr;
    getsockname(lfd, (struct sockaddr *)&addr, &alen);
    printf("listening on %s:%d\n", host, ntohs(addr.sin_port));
    fflush(stdout);

    int epfd = epoll_create1(0);
    if (epfd < 0) die("epoll_create1");
    watch_fd(epfd, EPOLL_CTL_ADD, lfd, EPOLLIN);
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == lfd) {
                for (;;) {
                    int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
                    if (c < 0) break; /* EAGAIN, or out of descriptors: retried on the next event */
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    watch_fd(epfd, EPOLL_CTL_ADD, c, EPOLLIN);
                }
            } else if ((size_t)fd < pending_cap && pending[fd]) {
                int r = flush(fd);
                if (r < 0) drop(epfd, fd);
                else if (r == 0) watch_fd(epfd, EPOLL_CTL_MOD, fd, EPOLLIN);
            } else {
                readable(epfd, fd);
            }
        }
    }
}
