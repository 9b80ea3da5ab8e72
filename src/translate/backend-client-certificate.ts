// Gateway `spec.tls.backend.clientCertificateRef` (GatewayBackendClientCertificate):
// the certificate a Gateway presents to backends it reaches over TLS.
//
// Clusters are shared by every Gateway whose routes use a Service, but the
// certificate belongs to one Gateway; so a Gateway with one gets its own
// copy of each TLS cluster it uses (`<cluster>@<namespace/gateway>`, the
// certificate added), and its listeners' route entries are rewritten to
// those copies. Plain clusters need no certificate and stay shared. Copies
// are kept per base cluster and certificate, so an unchanged config gives
// the very same objects (the IR delta sends nothing again).
//
// The reference is checked as listener certificateRefs are (kind, grant,
// Secret, a matching pair); a bad one sets the Gateway's ResolvedRefs to
// False (InvalidClientCertificateRef, or RefNotPermitted) and nothing is
// presented; the Gateway stays Accepted.
import type { Gateway, ReferenceGrant, Secret, SecretObjectReference } from '../api/types.ts';
import type { Cluster, Filter, RouteEntry, WeightedBackend } from '../ir/types.ts';
import { resolveCertificateRef, type GoodCertificate } from './certificates.ts';
import { condition, type PlainCondition } from './conditions.ts';

export type BackendClientCertificate =
  | { ok: true; certificate: GoodCertificate }
  | { ok: false; reason: 'InvalidClientCertificateRef' | 'RefNotPermitted'; message: string };

/** null when the Gateway names no client certificate. */
export function resolveBackendClientCertificate(gw: Gateway, secrets: Map<string, Secret>, grants: ReferenceGrant[]): BackendClientCertificate | null {
  const ref = (gw.spec as { tls?: { backend?: { clientCertificateRef?: SecretObjectReference } } }).tls?.backend?.clientCertificateRef;
  if (ref === undefined) return null;
  const r = resolveCertificateRef(gw, ref, secrets, grants);
  if (r.ok) return { ok: true, certificate: r.certificate };
  const message = `spec.tls.backend.clientCertificateRef: ${r.message.replace(/^certificateRef /, '')}`;
  return { ok: false, reason: r.reason === 'RefNotPermitted' ? 'RefNotPermitted' : 'InvalidClientCertificateRef', message };
}

/** The Gateway's ResolvedRefs condition for its client certificate; null when it names none. */
export function clientCertificateCondition(c: BackendClientCertificate | null, generation: number | undefined): PlainCondition | null {
  if (c === null) return null;
  return c.ok
    ? condition('ResolvedRefs', true, 'ResolvedRefs', 'All references resolved', generation)
    : condition('ResolvedRefs', false, c.reason, c.message, generation);
}

/** Base cluster -> certificate fingerprint and Gateway -> its copy. */
const copies = new WeakMap<Cluster, Map<string, Cluster>>();

/** Rewrites route entries of one Gateway to copies of their TLS clusters that present its certificate. */
export class ClientCertificateVariant {
  readonly gateway: string;
  readonly certificate: GoodCertificate;
  /** Every copy handed out, to be added to the IR. */
  readonly #out: Record<string, Cluster>;
  readonly #base: Record<string, Cluster>;

  constructor(gateway: string, certificate: GoodCertificate, base: Record<string, Cluster>, out: Record<string, Cluster>) {
    this.gateway = gateway;
    this.certificate = certificate;
    this.#base = base;
    this.#out = out;
  }

  /** Memo key part: a changed certificate is another variant. */
  get key(): string {
    return `${this.gateway}\u0000${this.certificate.fingerprint}`;
  }

  entry(e: RouteEntry): RouteEntry {
    let changed = false;
    const backends = e.backends.map((b): WeightedBackend => {
      const cluster = b.cluster === null ? null : this.#name(b.cluster);
      const filters = this.#filters(b.filters);
      if (cluster === b.cluster && filters === b.filters) return b;
      changed = true;
      return { ...b, cluster, filters };
    });
    const filters = this.#filters(e.filters);
    if (!changed && filters === e.filters) return e;
    return { ...e, backends, filters };
  }

  #filters(fs: Filter[]): Filter[] {
    let out: Filter[] | null = null;
    fs.forEach((f, i) => {
      if (f.type !== 'RequestMirror') return;
      const name = this.#name(f.cluster);
      if (name === f.cluster) return;
      out ??= [...fs];
      out[i] = { ...f, cluster: name };
    });
    return out ?? fs;
  }

  /**
   * The copy's name for a TLS cluster, the name itself for any other. A
   * copy's own name (an entry of a host kept from the last call) gives the
   * copy again, so that it is in this IR too. Base names (`ns/svc:port`)
   * hold no `@`.
   */
  #name(named: string): string {
    const suffix = `@${this.gateway}`;
    const name = named.endsWith(suffix) ? named.slice(0, -suffix.length) : named;
    const base = this.#base[name];
    if (base === undefined || base.tls === undefined) return named;
    let byCert = copies.get(base);
    if (byCert === undefined) copies.set(base, byCert = new Map());
    const key = this.key;
    let copy = byCert.get(key);
    if (copy === undefined) {
      copy = {
        ...base,
        name: name + suffix,
        tls: { ...base.tls, clientCertificate: { certChain: this.certificate.certChain, privateKey: this.certificate.privateKey } },
      };
      byCert.set(key, copy);
    }
    this.#out[copy.name] = copy;
    return copy.name;
  }
}
