// What the file provider will read, at most. Every config file is input
// that may be hostile or simply wrong (a symlink to /dev/zero, a generated
// file gone wrong, a half-written editor save): each bound below keeps one
// bad file from stalling or exhausting the control plane. A file beyond a
// bound is refused and reported, and keeps the objects it gave before.

export interface LoaderLimits {
  /** Largest config file read, in bytes. */
  maxFileBytes: number;
  /** Most bytes read from the directory in one load, files taken in name order. */
  maxDirectoryBytes: number;
  /** Most config files read from the directory, the first by name. */
  maxFiles: number;
  /** Deepest nesting of maps and lists in a document. */
  maxDepth: number;
  /** Most values (maps, lists, scalars) in one document, YAML aliases expanded. */
  maxValues: number;
  /** How long an in-place rewrite must stay unchanged before it is used, in ms. */
  settleMs: number;
}

/**
 * 4 MiB. A Kubernetes object is at most ~1.5 MiB (etcd's default request
 * limit), and a config file holds a few of them; the largest real ones, a
 * CA bundle in a ConfigMap or a List of a few hundred routes, stay well
 * under 1 MiB. The read stops at this many bytes + 1 whatever the file
 * claims, so a file that grows while being read costs no more.
 */
export const DEFAULT_MAX_FILE_BYTES = 4 * 1024 * 1024;

/**
 * 64 MiB. Parsed and validated objects take ~10-20x their text in memory,
 * so this keeps one load under about a gigabyte whatever the directory
 * holds, while leaving room for ~30,000 route files of a typical 2 KiB.
 */
export const DEFAULT_MAX_DIRECTORY_BYTES = 64 * 1024 * 1024;

/**
 * 10,000. Ten times the 1,000 routes the control-plane benchmark serves;
 * each file costs a stat per full reload, and the listing is held in
 * memory. More objects fit in multi-document files or `kind: List`.
 */
export const DEFAULT_MAX_FILES = 10_000;

/**
 * 64 levels. The deepest field of any Gateway API kind is 11 levels down
 * (GRPCRoute spec.rules[].backendRefs[].filters[].requestHeaderModifier.add[]),
 * so 64 refuses nothing real; what it refuses is a nesting bomb, which
 * otherwise overflows the stack of every recursive walk after the parser
 * (validation, defaulting, structuredClone) at about 2,000 levels.
 */
export const DEFAULT_MAX_DEPTH = 64;

/**
 * 1,000,000 values per document. About what a 4 MiB file can hold without
 * aliases (`[0,0,0,...]`), so aliases ("billion laughs") cannot make a
 * document cost more than the file-size limit already allows.
 */
export const DEFAULT_MAX_VALUES = 1_000_000;

/**
 * 50 ms. A file renamed into place (editors, kubectl-like tools, the
 * conformance runner) is complete when it appears and is used at once. A
 * file rewritten in place is used only once its size and times have not
 * changed for this long, so that a writer between two write() calls is
 * not caught half-way. Envoy watches its file config sources for moves
 * only, "because in general only moves are atomic"; this accepts in-place
 * writes too, at the cost of this delay on them alone.
 */
export const DEFAULT_SETTLE_MS = 50;

export const DEFAULT_LOADER_LIMITS: Readonly<LoaderLimits> = Object.freeze({
  maxFileBytes: DEFAULT_MAX_FILE_BYTES,
  maxDirectoryBytes: DEFAULT_MAX_DIRECTORY_BYTES,
  maxFiles: DEFAULT_MAX_FILES,
  maxDepth: DEFAULT_MAX_DEPTH,
  maxValues: DEFAULT_MAX_VALUES,
  settleMs: DEFAULT_SETTLE_MS,
});

/**
 * The defaults with `overrides` applied. Throws, naming the option, on a
 * value that is not a positive integer (settleMs may be 0: no waiting).
 */
export function resolveLoaderLimits(overrides: Partial<LoaderLimits> = {}): LoaderLimits {
  const limits = { ...DEFAULT_LOADER_LIMITS };
  for (const key of Object.keys(DEFAULT_LOADER_LIMITS) as (keyof LoaderLimits)[]) {
    const v = overrides[key];
    if (v === undefined) continue;
    const min = key === 'settleMs' ? 0 : 1;
    if (!Number.isSafeInteger(v) || v < min) throw new Error(`file provider limit ${key}: must be an integer >= ${min}, not ${String(v)}`);
    limits[key] = v;
  }
  return limits;
}

/** `4194304 bytes (4 MiB)`: a byte count as the error messages give it. */
export function describeBytes(n: number): string {
  const mib = n / (1024 * 1024);
  return n >= 1024 * 1024 && Number.isInteger(mib * 10) ? `${n} bytes (${mib} MiB)` : `${n} bytes`;
}
