// Local stand-ins for the OpenStack APIs of the example: each answers
// every request with JSON saying which service it is and what it received.
import http from 'node:http';

export const BACKENDS = [
  { service: 'keystone-api', port: 9101 },
  { service: 'nova-api', port: 9102 },
  { service: 'glance-api', port: 9103 },
  { service: 'image-store', port: 9104 },
];

export function startEchoBackends(host = '127.0.0.1'): Promise<http.Server[]> {
  return Promise.all(BACKENDS.map(({ service, port }) => new Promise<http.Server>((resolve, reject) => {
    const server = http.createServer((req, res) => {
      let bytes = 0;
      req.on('data', (c: Buffer) => { bytes += c.length; });
      req.on('end', () => {
        const body = JSON.stringify({ service, method: req.method, path: req.url, headers: req.headers, bodyBytes: bytes }, null, 2);
        res.writeHead(200, { 'content-type': 'application/json' }).end(`${body}\n`);
      });
    });
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  })));
}
