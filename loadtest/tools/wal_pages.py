#!/usr/bin/env python3
"""Which B-trees a SQLite node's WAL frames belong to: where the write path's pages go.

Copy a running node's `switchboard.db` and `switchboard.db-wal` (under the data directory;
`loadtest run --start-node` keeps it in /tmp/loadtest-run-*/data) at the same moment, then:

    wal_pages.py DB WAL                      # frames per table and index, per commit
    wal_pages.py DB WAL --split actors 1     # one B-tree's frames by a column's text (here
                                             # `kind`), by the most common value on each page

Only the frames since the WAL last started over are read (those with the header's salt).
Works on copies; never open the node's own files.
"""
import argparse
import collections
import os
import shutil
import sqlite3
import struct
import tempfile


def frames(wal):
    data = open(wal, 'rb').read()
    _, _, psize, _, salt1, salt2, _, _ = struct.unpack('>8I', data[:32])
    off = 32
    while off + 24 + psize <= len(data):
        pgno, commit, s1, s2 = struct.unpack('>4I', data[off:off + 16])
        if (s1, s2) != (salt1, salt2):
            return
        yield pgno, commit, data[off + 24:off + 24 + psize]
        off += 24 + psize


def owners(db, wal):
    """Page number → B-tree name, read with dbstat from a private copy of both files."""
    tmp = tempfile.mkdtemp()
    shutil.copy(db, os.path.join(tmp, 'x.db'))
    shutil.copy(wal, os.path.join(tmp, 'x.db-wal'))
    con = sqlite3.connect(os.path.join(tmp, 'x.db'))
    out = {pgno: name for name, pgno in con.execute('SELECT name, pageno FROM dbstat')}
    con.close()
    shutil.rmtree(tmp)
    return out


def varint(b, i):
    v = 0
    for k in range(9):
        c = b[i]
        i += 1
        if k == 8:
            return (v << 8) | c, i
        v = (v << 7) | (c & 0x7F)
        if c < 0x80:
            return v, i
    return v, i


def serial_size(t):
    if t in (0, 8, 9, 10, 11):
        return 0
    if t <= 7:
        return [0, 1, 2, 3, 4, 6, 8, 8][t]
    return (t - 12) // 2 if t % 2 == 0 else (t - 13) // 2


def page_value(page, pgno, col, width):
    """The most common text of column `col` among a leaf page's cells (None: not a leaf)."""
    h = 100 if pgno == 1 else 0
    kind = page[h]
    if kind not in (0x0D, 0x0A):  # table leaf, index leaf
        return None
    cells = struct.unpack('>H', page[h + 3:h + 5])[0]
    seen = collections.Counter()
    for c in range(cells):
        p = struct.unpack('>H', page[h + 8 + 2 * c:h + 10 + 2 * c])[0]
        _, p = varint(page, p)  # payload size
        if kind == 0x0D:
            _, p = varint(page, p)  # rowid
        header, q = varint(page, p)
        types = []
        while q < p + header:
            t, q = varint(page, q)
            types.append(t)
        at = p + header + sum(serial_size(t) for t in types[:col])
        t = types[col] if col < len(types) else 0
        text = page[at:at + serial_size(t)] if t >= 13 and t % 2 == 1 else str(t).encode()
        seen[text[:width].decode(errors='replace')] += 1
    return seen.most_common(1)[0][0] if seen else '<empty>'


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('db')
    ap.add_argument('wal')
    ap.add_argument('--split', nargs=2, metavar=('BTREE', 'COLUMN'))
    ap.add_argument('--width', type=int, default=12, help='characters of the value to group by')
    args = ap.parse_args()
    owner = owners(args.db, args.wal)
    per, commits, total = collections.Counter(), 0, 0
    for pgno, commit, page in frames(args.wal):
        total += 1
        commits += commit != 0
        name = owner.get(pgno, '?')
        if args.split:
            if name != args.split[0]:
                continue
            value = page_value(page, pgno, int(args.split[1]), args.width)
            name = '<interior>' if value is None else value
        per[name] += 1
    print(f'{total} frames, {commits} commits, {total / max(commits, 1):.1f} frames per commit')
    for name, n in per.most_common():
        print(f'{name:40} {n:8} {100 * n / max(total, 1):5.1f}%  {n / max(commits, 1):7.2f} per commit')


if __name__ == '__main__':
    main()
