// Which file system holds the tables, and whether it is safe to map. A mapped page of a file whose
// mount went away (an NFS server gone, a FUSE daemon killed, a USB drive pulled) cannot be read
// back, and the kernel answers the read with SIGBUS: the process dies, no error to catch. So the
// tables are refused on such a file system at open unless the operator opts in. statfs's magic
// decides (it follows bind mounts and symlinks to the real file system); /proc/self/mountinfo
// names the mount in the message and catches FUSE subtypes statfs cannot tell apart.
import fs from 'node:fs';
import path from 'node:path';
import { PixtableError } from '../errors.js';

export type FileSystemKind = 'local' | 'network' | 'fuse' | 'removable';

/** statfs f_type values (linux/magic.h and the file systems' own headers) that are not local. */
const MAGIC: ReadonlyMap<number, { name: string; kind: FileSystemKind }> = new Map([
  [0x6969, { name: 'nfs', kind: 'network' }],
  [0x517b, { name: 'smb', kind: 'network' }],
  [0xff534d42, { name: 'cifs', kind: 'network' }],
  [0xfe534d42, { name: 'smb2', kind: 'network' }],
  [0x00c36400, { name: 'ceph', kind: 'network' }],
  [0x5346414f, { name: 'afs', kind: 'network' }],
  [0x6b414653, { name: 'afs', kind: 'network' }],
  [0x73757245, { name: 'coda', kind: 'network' }],
  [0x01021997, { name: '9p', kind: 'network' }],
  [0x0bd00bd0, { name: 'lustre', kind: 'network' }],
  [0x47504653, { name: 'gpfs', kind: 'network' }],
  [0x7461636f, { name: 'ocfs2', kind: 'network' }],
  [0x01161970, { name: 'gfs2', kind: 'network' }],
  [0x65735546, { name: 'fuse', kind: 'fuse' }],
  [0x4d44, { name: 'vfat', kind: 'removable' }],
  [0x2011bab0, { name: 'exfat', kind: 'removable' }],
  [0x9660, { name: 'iso9660', kind: 'removable' }],
  [0x15013346, { name: 'udf', kind: 'removable' }],
]);

/** mountinfo file system type names (the 9th field) that are not local. */
const NETWORK_TYPES = new Set([
  'nfs',
  'nfs4',
  'smb',
  'smb3',
  'smbfs',
  'cifs',
  'ceph',
  'afs',
  'coda',
  '9p',
  'lustre',
  'gpfs',
  'ocfs2',
  'gfs2',
  'glusterfs',
  'davfs',
  'ncpfs',
]);
const REMOVABLE_TYPES = new Set(['vfat', 'msdos', 'exfat', 'iso9660', 'udf']);

/** The kind of a statfs f_type; unknown magics are local (ext4, xfs, btrfs, tmpfs, overlay…). */
export function kindOfMagic(type: number): FileSystemKind {
  return MAGIC.get(type >>> 0)?.kind ?? 'local';
}

/** The kind of a mountinfo type name (`fuse.sshfs`, `nfs4`, `ext4`…). */
export function kindOfTypeName(type: string): FileSystemKind {
  const t = type.toLowerCase();
  if (t === 'fuse' || t === 'fuseblk' || t === 'fusectl' || t.startsWith('fuse.')) return 'fuse';
  if (NETWORK_TYPES.has(t)) return 'network';
  if (REMOVABLE_TYPES.has(t)) return 'removable';
  return 'local';
}

export interface Mount {
  mountPoint: string;
  type: string;
  source: string;
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/**
 * The mount holding `realPath` (already resolved: no symlinks) among `mountinfo`'s lines: the
 * longest mount point that is a path prefix of it, the last such line when mounts are stacked
 * (later lines are mounted over earlier ones).
 */
export function mountOf(mountinfo: string, realPath: string): Mount | undefined {
  let best: Mount | undefined;
  for (const line of mountinfo.split('\n')) {
    // id parent major:minor root mountpoint options [optional fields…] - type source superopts
    const fields = line.split(' ');
    const dash = fields.indexOf('-');
    if (dash < 6 || fields.length < dash + 3) continue;
    const mountPoint = unescape(fields[4] ?? '');
    const inside = mountPoint === '/' || realPath === mountPoint || realPath.startsWith(`${mountPoint}/`);
    if (!inside) continue;
    if (best && mountPoint.length < best.mountPoint.length) continue;
    best = { mountPoint, type: fields[dash + 1] ?? '', source: unescape(fields[dash + 2] ?? '') };
  }
  return best;
}

export interface FileSystemInfo {
  kind: FileSystemKind;
  /** the type's name, as mountinfo or statfs tell it */
  type: string;
  mount: Mount | undefined;
}

/** The deepest existing directory on the way to `dir`, resolved (what a mkdir -p would land on). */
function existingReal(dir: string): string {
  let d = path.resolve(dir);
  for (;;) {
    try {
      return fs.realpathSync(d);
    } catch {
      const up = path.dirname(d);
      if (up === d) return d;
      d = up;
    }
  }
}

/** The file system `dir` (or, before it exists, its nearest existing ancestor) lives on. */
export function fileSystemOf(dir: string): FileSystemInfo {
  const real = existingReal(dir);
  let mount: Mount | undefined;
  try {
    mount = mountOf(fs.readFileSync('/proc/self/mountinfo', 'utf8'), real);
  } catch {
    mount = undefined; // not Linux, or /proc not mounted: statfs alone decides
  }
  const magic = fs.statfsSync(real).type;
  const byMagic = kindOfMagic(magic);
  const byName = mount ? kindOfTypeName(mount.type) : 'local';
  const kind = byMagic !== 'local' ? byMagic : byName;
  const type = mount?.type ?? MAGIC.get(magic >>> 0)?.name ?? `0x${(magic >>> 0).toString(16)}`;
  return { kind, type, mount };
}

const WHY: Record<Exclude<FileSystemKind, 'local'>, string> = {
  network: 'a network file system',
  fuse: 'a FUSE file system',
  removable: 'a removable-media file system',
};

/**
 * Throws UNSAFE_FILESYSTEM when the tables directory is on a network, FUSE or removable file
 * system and `allow` is false; returns what was found either way (callers may log it).
 */
export function checkTablesFileSystem(tables: string, allow: boolean): FileSystemInfo {
  const info = fileSystemOf(tables);
  if (info.kind !== 'local' && !allow) {
    const where = info.mount ? ` mounted at ${info.mount.mountPoint} from ${info.mount.source}` : '';
    throw new PixtableError(
      'UNSAFE_FILESYSTEM',
      `${tables} is on ${WHY[info.kind]} (${info.type}${where}); a mapped table there kills the process with SIGBUS when the mount goes away`,
      { details: { kind: info.kind, type: info.type } },
    );
  }
  return info;
}
