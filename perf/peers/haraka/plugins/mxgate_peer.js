// Haraka as a peer of perf/side_by_side.py: the two settings the other peers run with.
//
// No reverse DNS lookup of the client: the equivalent of Postfix's
// smtpd_peername_lookup = no (the benchmark's namespaces have no resolver; each lookup
// would wait for its timeout).
//
// TCP_NODELAY on every client socket. Haraka leaves Nagle's algorithm on (Node's default
// for net.Server sockets), and it writes each reply of a pipelined MAIL/RCPT/DATA group
// as its own small segment: the RCPT reply then waits until the client ACKs the MAIL
// reply, which a client with delayed ACKs (Linux, mxgate-loadgen: 40 ms) holds back. That
// cost 42 ms per message (RCPT reply p50) and capped Haraka at about 110 msgs/s with 5
// sessions; Postfix and mxgate do not wait so.
exports.register = function () {
    this.register_hook('connect_init', 'nodelay');
    this.register_hook('lookup_rdns', 'no_rdns');
};

exports.nodelay = function (next, connection) {
    // connection.client is Haraka's pluggableStream (tls_socket.js), whose setNoDelay()
    // does nothing: set it on the socket underneath
    const sock = connection.client && connection.client.targetsocket;
    if (sock && typeof sock.setNoDelay === 'function') sock.setNoDelay(true);
    next();
};

exports.no_rdns = function (next) {
    next(OK, 'unknown');
};
