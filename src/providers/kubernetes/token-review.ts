// Who a proxy is: its pod's projected ServiceAccount token, requested for
// the audience "gatehouse", checked with a TokenReview by the API server
// (which knows the signing keys, expiry, and whether the pod the token is
// bound to still exists). A proxy may read a Gateway's config only as the
// ServiceAccount the controller provisioned for that Gateway, so a token
// of any other pod, even in the same namespace, reads nothing.
//
// The controller needs RBAC to create tokenreviews
// (authentication.k8s.io), as the built-in ClusterRole
// system:auth-delegator grants.
import { ApiException, AuthenticationV1Api, Observable, type KubeConfig } from '@kubernetes/client-node';
import type { Authentication } from './config-service.ts';
import { parseGatewayRef, TOKEN_AUDIENCE } from './config-protocol.ts';

export interface TokenReviewOptions {
  kubeConfig: KubeConfig;
  /**
   * The ServiceAccount provisioned for the Gateway (in the Gateway's
   * namespace), or null when the Gateway is not known (yet): the proxy is
   * then told 503 and comes back.
   */
  serviceAccountFor(gateway: { namespace: string; name: string }): string | null;
  /** Default TOKEN_AUDIENCE. */
  audience?: string;
  /**
   * How long one review may take before it is abandoned (the proxy is
   * told 503 and comes back); default 10 s. The config service counts
   * reviews in flight against its limit until they settle, so a hung API
   * server must not hold them forever.
   */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;

export type Authenticate = (token: string, gateway: string) => Promise<Authentication>;

export function tokenReviewAuthenticator(opts: TokenReviewOptions): Authenticate {
  const api = opts.kubeConfig.makeApiClient(AuthenticationV1Api);
  const audience = opts.audience ?? TOKEN_AUDIENCE;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return async (token, gatewayRef) => {
    const gateway = parseGatewayRef(gatewayRef);
    if (gateway === null) return { allowed: false, status: 403, reason: `not a Gateway reference: ${JSON.stringify(gatewayRef)}` };
    const serviceAccount = opts.serviceAccountFor(gateway);
    if (serviceAccount === null) return { allowed: false, status: 503, reason: `Gateway ${gatewayRef} is not known yet` };
    let status;
    try {
      const signal = AbortSignal.timeout(timeoutMs);
      const review = await api.createTokenReview({
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [audience] } },
      }, {
        middleware: [{
          pre: (request) => { request.setSignal(signal); return new Observable(Promise.resolve(request)); },
          post: (response) => new Observable(Promise.resolve(response)),
        }],
        middlewareMergeStrategy: 'append',
      });
      status = review.status ?? {};
    } catch (err) {
      const code = err instanceof ApiException ? ` (HTTP ${err.code})` : '';
      if ((err as Error)?.name === 'AbortError' || (err as Error)?.name === 'TimeoutError') {
        return { allowed: false, status: 503, reason: `TokenReview: no answer within ${timeoutMs} ms` };
      }
      // The message may quote the request; the token goes nowhere, logs included.
      const message = String((err as Error)?.message ?? err).split('\n')[0]!.replaceAll(token, '[token]').slice(0, 300);
      return { allowed: false, status: 503, reason: `TokenReview failed${code}: ${message}` };
    }
    if (status.authenticated !== true) {
      return { allowed: false, status: 401, reason: `token not authenticated${status.error ? `: ${status.error}` : ''}` };
    }
    // An API server that ignored the audiences would answer without them: such a token is not ours to accept.
    if (!(status.audiences ?? []).includes(audience)) {
      return { allowed: false, status: 401, reason: `token not valid for audience ${JSON.stringify(audience)}` };
    }
    const identity = status.user?.username ?? '';
    const expected = `system:serviceaccount:${gateway.namespace}:${serviceAccount}`;
    if (identity !== expected) {
      return { allowed: false, status: 403, reason: `token of ${JSON.stringify(identity)}, but ${gatewayRef} is read by ${expected}` };
    }
    return { allowed: true, identity };
  };
}
