#!/usr/bin/env python3
"""Differential test: mxgate-map -z ZONE -q against Debian's rbldnsd(8) on the same data.

For each case (format, zone text, queries) rbldnsd serves the file on 127.0.0.1 (UDP) and is
asked A and TXT for every query (reversed octets / nibbles for addresses); mxgate-map builds
the same text and answers the same queries. The answers must be identical. Without
/usr/sbin/rbldnsd it fails, naming Debian's rbldnsd package: the oracle is never skipped.
Usage: test_rbl_diff.py MXGATE_MAP"""
import ipaddress
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
import tool_packages  # noqa: E402  (tests/tool_packages.py)

RBLDNSD = '/usr/sbin/rbldnsd'
ZONE = 'bl.test'


def dns_query(port, qname, qtype):
    qid = random.randrange(65536)
    msg = struct.pack('>HHHHHH', qid, 0x0100, 1, 0, 0, 0)
    for label in qname.split('.'):
        msg += bytes([len(label)]) + label.encode()
    msg += b'\0' + struct.pack('>HH', qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    try:
        s.sendto(msg, ('127.0.0.1', port))
        data, _ = s.recvfrom(65535)
    finally:
        s.close()
    rid, flags, qd, an, ns, ar = struct.unpack('>HHHHHH', data[:12])
    assert rid == qid
    pos = 12

    def skip_name(p):
        while True:
            ln = data[p]
            if ln == 0:
                return p + 1
            if ln & 0xc0 == 0xc0:
                return p + 2
            p += ln + 1
    for _ in range(qd):
        pos = skip_name(pos) + 4
    out = []
    for _ in range(an):
        pos = skip_name(pos)
        typ, cls, ttl, rdlen = struct.unpack('>HHIH', data[pos:pos + 10])
        pos += 10
        rd = data[pos:pos + rdlen]
        pos += rdlen
        if typ == 1 and qtype == 1:
            out.append('.'.join(str(b) for b in rd))
        elif typ == 16 and qtype == 16:
            txt, i = b'', 0
            while i < len(rd):
                ln = rd[i]
                txt += rd[i + 1:i + 1 + ln]
                i += 1 + ln
            out.append(txt.decode('latin-1'))
    return flags & 0xf, out


def rbldnsd_answers(port, q, subzone=''):
    try:
        ip = ipaddress.ip_address(q)
        name = ip.reverse_pointer.rsplit('.', 2)[0]
    except ValueError:
        name = q
    qn = name + '.' + (subzone + '.' if subzone else '') + ZONE
    _, a = dns_query(port, qn, 1)
    _, t = dns_query(port, qn, 16)
    return sorted(a), sorted(t)


def mxgate_answers(tool, db, q, subzone=''):
    z = (subzone + '.' if subzone else '') + ZONE
    r = subprocess.run([tool, '-d', db, '-z', z, '-q', q], capture_output=True, text=True)
    if r.returncode == 1:
        return [], []
    if r.returncode != 0:
        raise RuntimeError('mxgate-map -q %s: %s' % (q, r.stderr))
    a, t = [], []
    for line in r.stdout.splitlines():
        x, _, txt = line.partition('\t')
        a.append(x)
        if txt:
            t.append(txt)
    return sorted(a), sorted(t)


CASES = [
    ('ip4set', '''
# prefixes, CIDR, ranges, exclusions, per-entry values
:127.0.0.2:Listed $ see http://x/$
10.0.0.0/8
!10.1.2.3
10.1.2 :3:Net 10.1.2
10.1.2.7 :4:
10.1.2.8 :5
10.1.2.9 Only text for $
192.168.0.0-192.168.3.255
172.16.1.5-172.16.2.9
172.16.1.200 :6:single
127.16-31
1.2.3.0/28
!1.2.3.4
1.2.3.4 :7:after exclusion
100.0.0.0/9
!100.64.0.0/10
''', ['10.0.0.1', '10.1.2.3', '10.1.2.4', '10.1.2.7', '10.1.2.8', '10.1.2.9', '10.1.3.1',
      '192.168.2.77', '192.168.4.1', '172.16.1.4', '172.16.1.5', '172.16.1.200', '172.16.2.9',
      '172.16.2.10', '127.16.0.1', '127.31.255.255', '127.32.0.0', '1.2.3.4', '1.2.3.15',
      '1.2.3.16', '100.1.1.1', '100.64.0.1', '100.100.0.1', '100.128.0.1', '11.0.0.0']),
    ('ip4set', '''
$1 http://example.org/
$= Listed: $= ($) at $1
1.1.1.1 r123
1.1.1.2
1.1.1.3 =Own text $ $$ $1
$MAXRANGE4 /24
2.0.0.0/16
2.1.0.0/24
''', ['1.1.1.1', '1.1.1.2', '1.1.1.3', '2.0.0.1', '2.1.0.1', '1.1.1.4']),
    ('ip4trie', '''
:2:trie $
10.0.0.0/8 :2:big
10.128.0.0/9 :3:half
10.200.0.0/13 :4:small
!10.200.1.0/24
10.200.1.128/25 :5:inside exclusion
1.2.3.4
''', ['10.0.0.1', '10.128.0.1', '10.200.0.1', '10.200.1.1', '10.200.1.200', '10.207.255.255',
      '10.208.0.0', '1.2.3.4', '1.2.3.5']),
    ('ip4tset', '''
:3:tset $
1.2.3.4
1.2.3.6
5.6.7.8
''', ['1.2.3.4', '1.2.3.5', '1.2.3.6', '5.6.7.8', '5.6.7.9']),
    ('ip6trie', '''
:127.0.1.2: Listed, see http://example.com/lookup?$
2001:21ab:c000/36
2001:21ab:def7:4242 :127.0.1.3: This one smells funny
2605:6001:42::/52
::1
!2605:6001:42::bead
''', ['2001:21ab:c000::1', '2001:21ab:cfff::1', '2001:21ab:d000::1', '2001:21ab:def7:4242::5',
      '2605:6001:42::1', '2605:6001:42::bead', '::1', '::2']),
    ('ip6tset', '''
:4:six $
2001:20fe:23:41ed
abac:adab:ad00:42f
!abac:adab:ad00:42f:face:f:a:beef
''', ['2001:20fe:23:41ed::1', '2001:20fe:23:41ee::1', 'abac:adab:ad00:42f::1',
      'abac:adab:ad00:42f:face:f:a:beef']),
    ('dnset', '''
:2:name $ listed
example.com
*.wild.example
.both.example :3:both
!ok.both.example
spam.test :4:
!*.sub.both.example
''', ['example.com', 'www.example.com', 'wild.example', 'a.wild.example', 'a.b.wild.example',
      'both.example', 'x.both.example', 'ok.both.example', 'y.ok.both.example', 'spam.test',
      'z.sub.both.example', 'sub.both.example', 'nothing.example']),
    # overlaps at one level: rbldnsd answers every line; exclusions win ties
    ('ip4set', '''
1.2.3.4 :3:first
1.2.3.4 :4:second
!1.2.4.0/24
1.2.4.5 :5:listed
1.2.5.0/24 :6:a
1.2.5.0/24 :7:b
!1.2.6.7
1.2.6.0-1.2.6.255 :8:range
  1.2.8.1 :1.2:short A
1.2.9.1 :1.2.3:x
1.2.10.1 :4.5.6.7:y
!1.2.11.0/24 :3:ignored
1.2.11.0/24 :9:
1.2.11.0-1.2.11.255
1.2.12.1
!1.2.12.1
''', ['1.2.3.4', '1.2.4.5', '1.2.4.6', '1.2.5.1', '1.2.6.7', '1.2.6.8', '1.2.8.1', '1.2.9.1',
      '1.2.10.1', '1.2.11.1', '1.2.12.1']),
    # comments after entries, #$ specials, $= inserting the entry's text as it is
    ('ip4set', '''
5.5.5.5
127/8 ; loopback
#$1 V1
:3:def $1 $
$= [$=] $1
6.6.6.6
7.7.7.7 own $1
8.8.8.8 =raw $1 $ $$
9.9.9.9 :4:
9.9.9.10 :5
''', ['5.5.5.5', '127.0.0.1', '6.6.6.6', '7.7.7.7', '8.8.8.8', '9.9.9.9', '9.9.9.10']),
    # the tries: the first of duplicated prefixes wins, exclusion or not
    ('ip4trie', '''
1.2.3.0/24 :3:first
1.2.3.0/24 :4:second
!1.2.4.0/24
1.2.4.0/24 :5:listed
1.2.5.0/24 :6:
!1.2.5.0/24
1.2.6.1
:7:default $
1.2.6.2
0.0.0.0/0 :8:all
''', ['1.2.3.4', '1.2.4.5', '1.2.5.1', '1.2.6.1', '1.2.6.2', '9.9.9.9']),
    # a set of one value: the first default line, entry values ignored
    ('ip4tset', '''
:3:tset $
1.2.3.4 :5:own
1.2.3.4
1.2.3.6
:4:second $
1.2.3.7
''', ['1.2.3.4', '1.2.3.5', '1.2.3.6', '1.2.3.7']),
    ('dnset', '''
a.example :3:first
a.example :4:second
!b.example
b.example :5:
.c.example :6:c
!*.c.example
d.example
:7:def $
e.example
*.F.Example. :8:
''', ['a.example', 'b.example', 'c.example', 'x.c.example', 'd.example', 'e.example',
      'g.f.example', 'f.example', 'A.EXAMPLE']),
]

COMBINED = '''
$TTL 1h
$DATASET ip4set:proxy proxies @
:2:Open proxy $
127.0.0.2
127.0.0.10
$DATASET ip4set:relay relays @
:3:Open relay $
127.0.0.2
127.0.2.10
$DATASET ip4set:multi multihop
:4:Multihop $
127.0.0.2
127.0.9.12
$DATASET dnset:names @
:5:Name $
bad.example
'''
COMBINED_Q = ['127.0.0.2', '127.0.0.10', '127.0.2.10', '127.0.9.12', '127.0.0.3', 'bad.example']


def run_case(tool, fmt, text, queries, subzones=('',)):
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'zone')
        with open(path, 'w') as f:
            f.write(text)
        # rbldnsd drops root privileges to its own user, who must read the file
        os.chmod(tmp, 0o755)
        os.chmod(path, 0o644)
        db = os.path.join(tmp, 'db')
        r = subprocess.run([tool, '-d', db, '-z', ZONE, '-t', fmt, path], capture_output=True,
                           text=True)
        if r.returncode != 0:
            print('FAIL build %s: %s' % (fmt, r.stderr))
            return 1
        port = random.randrange(20000, 60000)
        d = subprocess.Popen([RBLDNSD, '-n', '-f', '-b', '127.0.0.1/%d' % port,
                              '-w', tmp, '%s:%s:zone' % (ZONE, fmt)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            for _ in range(50):
                try:
                    dns_query(port, 'x.' + ZONE, 1)
                    break
                except OSError:
                    time.sleep(0.1)
            for sub in subzones:
                for q in queries:
                    want = rbldnsd_answers(port, q, sub)
                    got = mxgate_answers(tool, db, q, sub)
                    if want != got:
                        print('FAIL %s %s%s: rbldnsd %s, mxgate %s' %
                              (fmt, q, ' in ' + sub if sub else '', want, got))
                        failures += 1
        finally:
            d.terminate()
            d.wait()
    return failures


def main():
    tool_packages.need_tool(RBLDNSD)
    tool = sys.argv[1]
    failures = 0
    for fmt, text, queries in CASES:
        failures += run_case(tool, fmt, text, queries)
    failures += run_case(tool, 'combined', COMBINED, COMBINED_Q,
                         ('', 'proxies', 'relays', 'multihop'))
    print('%d differences' % failures)
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
