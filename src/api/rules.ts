// The x-kubernetes-validations (CEL) rules of the Gateway API CRDs, run by
// a CEL evaluator (src/api/cel/) from the CRD files themselves: a CRD
// update brings its rules along, and a rule that needs a CEL function
// Gatehouse lacks fails to compile loudly (test/api/cel.test.ts compiles
// every rule of every CRD served and of the released bundle in deploy/).
//
// Rules run on the pruned and defaulted object, as the API server runs
// them, and only when the schema found no error of the kinds that stop the
// API server from running them (schema.ts's blocking errors): a rule may
// then rely on the types and bounds the schema gives.
//
// Not run: transition rules (`oldSelf`: GatewayClass controllerName
// immutability). They compare an update with the stored version; objects
// from files have none, and objects read from the API server were already
// held to them there.
import type { FieldError } from './errors.ts';
import type { Schema } from './schema.ts';
import { runRules } from './cel/validator.ts';

type Obj = Record<string, unknown>;

/** What the API server says when it leaves the rules unchecked because the schema found errors that stop them. */
export const RULES_NOT_CHECKED = 'some validation rules were not checked because the object was invalid; correct the existing errors to complete validation';

/** The CEL rules of `schema` (one served version of a CRD) on object `o`; `skip` names root fields left out (metadata). */
export function checkRules(o: Obj, schema: Schema, skip?: ReadonlySet<string>): FieldError[] {
  return runRules(o, schema, skip);
}
