// Tables are refused on network, FUSE and removable file systems (a vanished mount is SIGBUS on
// the next touch of a mapped page). The classification against recorded /proc/self/mountinfo
// lines and statfs magics, then real mounts made here: a tmpfs (allowed) and a FUSE file system
// (squashfuse over a squashfs image; refused unless opted in).
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ImageCache } from '../../src/cache.js';
import { PixtableError } from '../../src/errors.js';
import { loadConfig } from '../../src/config/env.js';
import { openOptions } from '../../src/config/open-options.js';
import {
  checkTablesFileSystem,
  fileSystemOf,
  kindOfMagic,
  kindOfTypeName,
  mountOf,
} from '../../src/engine/filesystem.js';
import { mountTmpfs, tmpfsUnavailable } from '../helpers/tmpfs.js';

// Lines as the kernel writes them (proc(5)), from machines with such mounts.
const MOUNTINFO = [
  '22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard',
  '30 22 0:27 / /dev/shm rw,nosuid,nodev shared:4 - tmpfs tmpfs rw,size=65536k',
  '41 22 0:40 / /mnt/nfs rw,relatime shared:20 - nfs4 fileserver:/export/photos rw,vers=4.2,rsize=1048576',
  '42 22 0:41 / /mnt/share rw,relatime shared:21 - cifs //nas/share rw,vers=3.1.1,cache=strict',
  '43 22 0:42 / /mnt/ssh rw,nosuid,nodev,relatime shared:22 - fuse.sshfs me@host:/data rw,user_id=0,group_id=0',
  '44 22 0:43 / /mnt/bucket rw,nosuid,nodev,relatime shared:23 - fuse.s3fs s3fs rw,user_id=0,group_id=0',
  '45 22 8:17 / /media/usb\\040stick rw,relatime shared:24 - vfat /dev/sdb1 rw,fmask=0022',
  '46 22 0:44 / /srv/data rw,relatime shared:25 - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w',
  '47 41 0:45 / /mnt/nfs/local rw,relatime shared:26 - ext4 /dev/vdb rw',
  '48 22 0:46 / /srv/data rw,relatime shared:27 - 9p hostshare rw,trans=virtio',
].join('\n');

describe('classification from recorded mountinfo lines', () => {
  const kind = (p: string) => {
    const m = mountOf(MOUNTINFO, p);
    return m && { at: m.mountPoint, type: m.type, kind: kindOfTypeName(m.type) };
  };

  it('finds the longest mount point that is a path prefix', () => {
    assert.deepEqual(kind('/var/lib/pixtable/tables'), { at: '/', type: 'ext4', kind: 'local' });
    assert.deepEqual(kind('/dev/shm/px/tables'), { at: '/dev/shm', type: 'tmpfs', kind: 'local' });
    assert.deepEqual(kind('/mnt/nfs/tables'), { at: '/mnt/nfs', type: 'nfs4', kind: 'network' });
    assert.deepEqual(kind('/mnt/nfs'), { at: '/mnt/nfs', type: 'nfs4', kind: 'network' });
    // a local disk mounted inside the NFS mount is local
    assert.deepEqual(kind('/mnt/nfs/local/tables'), { at: '/mnt/nfs/local', type: 'ext4', kind: 'local' });
    // a sibling whose name starts like a mount point is not inside it
    assert.deepEqual(kind('/mnt/nfs-cache/tables'), { at: '/', type: 'ext4', kind: 'local' });
  });

  it('knows SMB/CIFS, FUSE subtypes and removable media; names with spaces are unescaped', () => {
    assert.equal(kind('/mnt/share/t')?.kind, 'network');
    assert.equal(kind('/mnt/ssh/t')?.kind, 'fuse');
    assert.equal(kind('/mnt/bucket/t')?.kind, 'fuse');
    assert.deepEqual(kind('/media/usb stick/t'), { at: '/media/usb stick', type: 'vfat', kind: 'removable' });
  });

  it('takes the mount stacked last on one mount point', () => {
    assert.deepEqual(kind('/srv/data/tables'), { at: '/srv/data', type: '9p', kind: 'network' });
  });

  it('skips malformed lines', () => {
    assert.equal(mountOf('garbage\n1 2 3\n', '/x'), undefined);
  });

  it('classifies statfs magics (linux/magic.h)', () => {
    assert.equal(kindOfMagic(0xef53), 'local'); // ext4
    assert.equal(kindOfMagic(0x01021994), 'local'); // tmpfs
    assert.equal(kindOfMagic(0x794c7630), 'local'); // overlayfs
    assert.equal(kindOfMagic(0x6969), 'network'); // NFS
    assert.equal(kindOfMagic(0xff534d42), 'network'); // CIFS
    assert.equal(kindOfMagic(0xfe534d42 | 0), 'network'); // SMB2, as a signed 32-bit value
    assert.equal(kindOfMagic(0x65735546), 'fuse');
    assert.equal(kindOfMagic(0x4d44), 'removable'); // vfat
  });
});

describe('real mounts', () => {
  const cleanups: (() => void)[] = [];
  after(() => {
    for (const c of cleanups.reverse()) {
      try {
        c();
      } catch {
        // the others still run
      }
    }
  });

  it('a tmpfs is local: the cache opens there', { skip: tmpfsUnavailable() }, async () => {
    const disk = mountTmpfs('16m');
    cleanups.push(() => disk.unmount());
    assert.equal(fileSystemOf(path.join(disk.dir, 'tables')).kind, 'local');
    assert.equal(fileSystemOf(path.join(disk.dir, 'tables')).mount?.mountPoint, fs.realpathSync(disk.dir));
    const cache = await ImageCache.open({ storage: disk.dir });
    await cache.close();
  });

  const fuseMissing =
    tmpfsUnavailable() ??
    (['squashfuse', 'mksquashfs'].find((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0) &&
      'needs squashfuse and mksquashfs (apt-get install -y squashfuse squashfs-tools)');

  it('a FUSE mount is refused with UNSAFE_FILESYSTEM unless opted in', { skip: fuseMissing }, async () => {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pixtable-fuse-'));
    cleanups.push(() => fs.rmSync(work, { recursive: true, force: true }));
    // a storage a writer made on a local disk, then packed into the image the FUSE mount serves
    const made = await ImageCache.open({ storage: path.join(work, 'image') });
    await made.close();
    const image = path.join(work, 'storage.sqfs');
    const mk = spawnSync('mksquashfs', [path.join(work, 'image'), image, '-noappend', '-quiet'], {
      encoding: 'utf8',
    });
    assert.equal(mk.status, 0, mk.stderr);
    const storage = path.join(work, 'mnt');
    fs.mkdirSync(storage);
    const m = spawnSync('squashfuse', [image, storage], { encoding: 'utf8', timeout: 10_000 });
    assert.equal(m.status, 0, m.stderr);
    cleanups.push(() => spawnSync('umount', ['-l', storage]));

    const info = fileSystemOf(path.join(storage, 'tables'));
    assert.equal(info.kind, 'fuse');
    assert.equal(info.type, 'fuse.squashfuse');

    await assert.rejects(ImageCache.open({ storage, readOnly: true }), (e: unknown) => {
      assert.ok(e instanceof PixtableError);
      assert.equal(e.code, 'UNSAFE_FILESYSTEM');
      assert.match(
        e.message,
        /is on a FUSE file system \(fuse\.squashfuse mounted at .*\/mnt from squashfuse\)/,
      );
      return true;
    });
    // through the server's configuration too
    const { config } = loadConfig({ PIXTABLE_STORAGE: storage, PIXTABLE_READ_ONLY: 'true' });
    await assert.rejects(ImageCache.open(openOptions(config)), { code: 'UNSAFE_FILESYSTEM' });

    // the operator's opt-in: the check passes and the open goes on
    assert.equal(checkTablesFileSystem(path.join(storage, 'tables'), true).kind, 'fuse');
    const allowed = loadConfig({
      PIXTABLE_STORAGE: storage,
      PIXTABLE_READ_ONLY: 'true',
      PIXTABLE_ALLOW_NETWORK_FS: 'true',
    }).config;
    // (a read-only mount: the reader table cannot be written, which the cache warns about)
    const cache = await ImageCache.open(openOptions(allowed, { logger: { warn: () => {} } }));
    await cache.close();
  });
});
