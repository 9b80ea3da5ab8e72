// Server certificates chosen by SNI. Secure contexts are built when a config
// is applied, never during a handshake, and reused across applies while the
// certificate and key stay the same (parsing keys is the expensive part).

import { createSecureContext, type SecureContext } from 'node:tls';
import type { ClientValidation, TLSCertificate } from '../../ir/types.ts';

export const MIN_TLS_VERSION = 'TLSv1.2';

/** A certificate as the default (no SNI) context of a server is set from. */
export interface CertificateMaterial {
  readonly cert: string;
  readonly key: string;
  /** CA certificates client certificates are verified against (tls.frontend); absent when none are asked for. */
  readonly ca?: string;
  /** Equal for equal material: tells whether a server's default must change. */
  readonly identity: string;
}

/**
 * Contexts of the previous apply, keyed by certificate + key. Each apply
 * starts a new generation so contexts no config uses any more are dropped.
 */
export class SecureContextCache {
  #previous = new Map<string, SecureContext>();
  #current = new Map<string, SecureContext>();

  beginGeneration(): void {
    this.#previous = this.#current;
    this.#current = new Map();
  }

  /** Throws when the certificate or key cannot be loaded. */
  get(material: CertificateMaterial): SecureContext {
    let context = this.#current.get(material.identity) ?? this.#previous.get(material.identity);
    if (context === undefined) {
      context = createSecureContext({ cert: material.cert, key: material.key, ca: material.ca, minVersion: MIN_TLS_VERSION });
    }
    this.#current.set(material.identity, context);
    return context;
  }
}

/**
 * `ca`: the socket's client validation CAs. They live in each certificate's
 * context, since node verifies a client against the CAs of the context
 * its SNI chose.
 */
export function certificateMaterial(certificate: TLSCertificate, ca?: string): CertificateMaterial {
  return {
    cert: certificate.certChain,
    key: certificate.privateKey,
    ...(ca !== undefined ? { ca } : {}),
    identity: `${certificate.certChain}\0${certificate.privateKey}\0${ca ?? ''}`,
  };
}

export interface SniCompileResult {
  /** null when no certificate could be loaded. */
  readonly table: SniTable | null;
  /** One line per certificate that could not be loaded. */
  readonly errors: string[];
}

/**
 * A listener's certificates by server name. A name no certificate covers
 * is refused at the handshake (unrecognized_name), as Envoy Gateway does,
 * unless a certificate for any name (`*`: a Gateway listener without
 * hostname) exists; that one also serves clients that send no SNI, who
 * are refused when there is none. Serving some other listener's
 * certificate instead would only move the failure to the client's name
 * check, or worse, let it reach a listener it did not ask for.
 */
export class SniTable {
  /**
   * What node's server context is set from, since node answers clients
   * without SNI from it without asking: the `*` certificate, or the first
   * loadable one when there is none (such clients are refused before the
   * handshake reaches node, see ../http/server.ts).
   */
  readonly defaultMaterial: CertificateMaterial;
  readonly #exact = new Map<string, SecureContext>();
  readonly #wildcards = new Map<string, SecureContext>();
  readonly #any: SecureContext | undefined;

  static compile(certificates: readonly TLSCertificate[], cache: SecureContextCache, clientValidation?: ClientValidation): SniCompileResult {
    const errors: string[] = [];
    const loaded: { names: string[]; material: CertificateMaterial; context: SecureContext }[] = [];
    certificates.forEach((certificate, index) => {
      const material = certificateMaterial(certificate, clientValidation?.caCertificates);
      try {
        loaded.push({ names: certificate.serverNames, material, context: cache.get(material) });
      } catch (err) {
        const names = certificate.serverNames.join(', ') || '(no names)';
        errors.push(`certificate ${index} (${names}): ${(err as Error).message}`);
      }
    });
    return { table: loaded.length === 0 ? null : new SniTable(loaded, clientValidation?.mode ?? null), errors };
  }

  /**
   * Whether clients are asked for a certificate, and whether one that is
   * missing or does not verify fails the handshake (AllowValidOnly) or is
   * let through (AllowInsecureFallback); null: none is asked for.
   */
  readonly clientValidation: ClientValidation['mode'] | null;

  private constructor(loaded: { names: string[]; material: CertificateMaterial; context: SecureContext }[], clientValidation: ClientValidation['mode'] | null) {
    this.clientValidation = clientValidation;
    let any: SecureContext | undefined;
    let anyMaterial: CertificateMaterial | undefined;
    for (const { names, context, material } of loaded) {
      for (const raw of names) {
        const name = normalizeServerName(raw);
        if (name === '*') {
          if (any === undefined) {
            any = context;
            anyMaterial = material;
          }
        } else if (name.startsWith('*.')) {
          const suffix = name.slice(1);
          if (!this.#wildcards.has(suffix)) this.#wildcards.set(suffix, context);
        } else if (!this.#exact.has(name)) {
          this.#exact.set(name, context);
        }
      }
    }
    this.#any = any;
    this.defaultMaterial = anyMaterial ?? loaded[0].material;
  }

  /** Whether a ClientHello with this SNI (null: none) is served; see the class comment. */
  serves(serverName: string | null): boolean {
    return this.contextFor(serverName) !== undefined;
  }

  /**
   * Exact name first, then the wildcard with the longest suffix, then `*`;
   * undefined: refuse the handshake.
   */
  contextFor(serverName: string | null | undefined): SecureContext | undefined {
    if (!serverName) return this.#any;
    const name = normalizeServerName(serverName);
    const exact = this.#exact.get(name);
    if (exact !== undefined) return exact;
    if (this.#wildcards.size !== 0) {
      // Leftmost dot first: the longest suffix is tried first.
      for (let dot = name.indexOf('.', 1); dot !== -1; dot = name.indexOf('.', dot + 1)) {
        const context = this.#wildcards.get(name.slice(dot));
        if (context !== undefined) return context;
      }
    }
    return this.#any;
  }
}

function normalizeServerName(name: string): string {
  const lower = name.toLowerCase();
  return lower.length > 1 && lower.endsWith('.') ? lower.slice(0, -1) : lower;
}
