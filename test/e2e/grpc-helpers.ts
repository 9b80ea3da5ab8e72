// The test service of the gRPC e2e tests: raw bytes in and out (no
// protobuf), a unary method and a server-streaming one.
import type * as grpc from '@grpc/grpc-js';

const identity = (b: Buffer): Buffer => b;
export const SERVICE: grpc.ServiceDefinition = {
  Echo: {
    path: '/test.Echo/Echo',
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
  Count: {
    path: '/test.Echo/Count',
    requestStream: false,
    responseStream: true,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};

