/*
 * raw-echo: a WebSocket echo without the opening handshake, the floor of the comparison. It
 * does what the kernel requires and the least that the protocol does: one epoll loop, every
 * read into one shared buffer, each client frame in it answered as a server frame (the same
 * FIN and opcode bits and payload, the mask taken off), all the answers to one read in one
 * write. A Close frame is echoed like any other, and then the sending side is shut down, as a
 * WebSocket server closes the TCP connection first (RFC 6455 section 7.1.1).
 *
 * Frames may split across reads anywhere, header included: each connection keeps the header
 * bytes read so far, the payload bytes still to come and where in the mask key it is, in an
 * array indexed by file descriptor. Output the peer is not reading yet is kept per connection,
 * and reading from that connection pauses until it drains (so memory stays bounded). Nothing is
 * checked (reserved bits, control frame sizes, UTF-8): the load generator sends valid frames.
 *
 * `switchboard bench --raw` speaks to it as to a WebSocket server after the handshake, so the
 * load generator does the same work per message here as against any WebSocket server.
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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE (512 * 1024)
/* The longest client frame header: 2 bytes, a 64-bit length, a 4-byte mask key. */
#define MAX_HEADER 14
#define MAX_EVENTS 1024

/* Output not yet written. */
struct pending {
    size_t len, off;
    uint8_t data[];
};

/* One connection, indexed by its file descriptor; zeroed when the descriptor closes. */
struct conn {
    struct pending *pending; /* NULL for nearly every connection */
    uint64_t left;           /* payload bytes of the current frame still to come */
    uint8_t key[4];          /* the current frame's mask key */
    uint8_t key_pos;         /* where in the key the next payload byte is */
    uint8_t head_len;        /* bytes of the next frame's header read so far (in head) */
    uint8_t closing;         /* a Close frame came: shut down once its echo is out */
    uint8_t head[MAX_HEADER];
};

static struct conn *conns;
static size_t conns_cap;
static uint8_t buf[BUF_SIZE];
/* A read's answers: no longer than the read, but for the header of a frame that began in an
 * earlier read. */
static uint8_t out[BUF_SIZE + MAX_HEADER];

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void drop(int epfd, int fd) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    free(conns[fd].pending);
    memset(&conns[fd], 0, sizeof conns[fd]);
    close(fd);
}

static void watch_fd(int epfd, int op, int fd, unsigned events) {
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (epoll_ctl(epfd, op, fd, &ev) < 0) die("epoll_ctl");
}

/* Makes room in `conns` for descriptor `fd`. */
static void track(int fd) {
    if ((size_t)fd < conns_cap) return;
    size_t cap = conns_cap ? conns_cap : 1024;
    while (cap <= (size_t)fd) cap *= 2;
    conns = realloc(conns, cap * sizeof *conns);
    if (!conns) die("realloc");
    memset(conns + conns_cap, 0, (cap - conns_cap) * sizeof *conns);
    conns_cap = cap;
}

/* The length of a header that starts with the `have` bytes at `h` (at least 2 known). */
static size_t header_len(const uint8_t *h, size_t have) {
    if (have < 2) return 2;
    size_t len = h[1] & 0x7f;
    return 2 + (len == 126 ? 2 : len == 127 ? 8 : 0) + ((h[1] & 0x80) ? 4 : 0);
}

/* Copies `len` bytes from `src` to `dst` with the mask `key` taken off, starting at `pos` in
 * the key, 8 bytes at a time; returns the position after them. */
static uint8_t unmask(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[4],
                      uint8_t pos) {
    uint8_t k[8];
    for (int i = 0; i < 8; i++) k[i] = key[(pos + i) & 3];
    uint64_t k64;
    memcpy(&k64, k, 8);
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t v;
        memcpy(&v, src + i, 8);
        v ^= k64;
        memcpy(dst + i, &v, 8);
    }
    for (; i < len; i++) dst[i] = src[i] ^ k[i & 7];
    return (uint8_t)((pos + len) & 3);
}

/* Answers the `n` bytes at `in`, read from connection `c`: writes the server frames into `o`
 * and returns their length. */
static size_t answer(struct conn *c, const uint8_t *in, size_t n, uint8_t *o) {
    uint8_t *start = o;
    for (;;) {
        if (c->left == 0) {
            size_t need;
            while (c->head_len < (need = header_len(c->head, c->head_len))) {
                if (n == 0) return (size_t)(o - start);
                size_t take = need - c->head_len < n ? need - c->head_len : n;
                memcpy(c->head + c->head_len, in, take);
                c->head_len += (uint8_t)take;
                in += take;
                n -= take;
            }
            const uint8_t *h = c->head;
            uint64_t len = h[1] & 0x7f;
            size_t lh = 2;
            if (len == 126) {
                len = (uint64_t)h[2] << 8 | h[3];
                lh = 4;
            } else if (len == 127) {
                len = 0;
                for (int i = 2; i < 10; i++) len = len << 8 | h[i];
                lh = 10;
            }
            /* The same header without the mask bit and key. */
            memcpy(o, h, lh);
            o[1] &= 0x7f;
            o += lh;
            if (h[1] & 0x80) memcpy(c->key, h + lh, 4);
            else memset(c->key, 0, 4);
            if ((h[0] & 0x0f) == 0x8) c->closing = 1;
            c->key_pos = 0;
            c->left = len;
            c->head_len = 0;
        }
        if (n == 0) return (size_t)(o - start);
        size_t take = c->left < n ? (size_t)c->left : n;
        c->key_pos = unmask(o, in, take, c->key, c->key_pos);
        o += take;
        in += take;
        n -= take;
        c->left -= take;
    }
}

/* Writes what `fd` still owes its peer; returns 0 when all of it is out, 1 if some is left,
 * -1 on error. */
static int flush(int fd) {
    struct pending *p = conns[fd].pending;
    while (p->off < p->len) {
        ssize_t n = write(fd, p->data + p->off, p->len - p->off);
        if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 1 : -1;
        p->off += (size_t)n;
    }
    free(p);
    conns[fd].pending = NULL;
    return 0;
}

/* All output of `fd` is out: once that includes a whole Close frame, the server's end of the
 * closing handshake. The peer's FIN then comes as a read of 0 bytes. */
static void written(int fd) {
    if (conns[fd].closing && conns[fd].left == 0) shutdown(fd, SHUT_WR);
}

static void readable(int epfd, int fd) {
    ssize_t r = read(fd, buf, sizeof buf);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        drop(epfd, fd);
        return;
    }
    if (r < 0) return;
    size_t n = answer(&conns[fd], buf, (size_t)r, out);
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, out + done, n - done);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            drop(epfd, fd);
            return;
        }
        done += (size_t)w;
    }
    if (done == n) {
        written(fd);
        return;
    }
    /* The peer is not reading: keep the rest and stop reading until it is out. */
    struct pending *p = malloc(sizeof *p + (n - done));
    if (!p) die("malloc");
    p->len = n - done;
    p->off = 0;
    memcpy(p->data, out + done, p->len);
    conns[fd].pending = p;
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
                    track(c);
                    watch_fd(epfd, EPOLL_CTL_ADD, c, EPOLLIN);
                }
            } else if (conns[fd].pending) {
                int r = flush(fd);
                if (r < 0) {
                    drop(epfd, fd);
                } else if (r == 0) {
                    written(fd);
                    watch_fd(epfd, EPOLL_CTL_MOD, fd, EPOLLIN);
                }
            } else {
                readable(epfd, fd);
            }
        }
    }
}
