// Serves the page (web/www) and TensorFlow.js (web/node_modules, for the
// benchmark page) on http://127.0.0.1:PORT (8000, or $PORT, or the first
// argument). Plain node, no dependencies. Imported by the browser tests.
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const roots = { '/node_modules/': join(here, 'node_modules'), '/': join(here, 'www') };
const types = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.wasm': 'application/wasm', '.css': 'text/css', '.json': 'application/json',
  '.map': 'application/json', '.png': 'image/png',
};

export function serve(port = 8000) {
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const prefix = Object.keys(roots).find((p) => path.startsWith(p));
    let file = normalize(join(roots[prefix], path.slice(prefix.length)));
    if (!file.startsWith(roots[prefix])) {
      res.writeHead(403).end();
      return;
    }
    try {
      if ((await stat(file)).isDirectory()) file = join(file, 'index.html');
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
      res.end(body);
    } catch {
      res.writeHead(404).end('not found');
    }
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const port = Number(process.argv[2] ?? process.env.PORT ?? 8000);
  const server = await serve(port);
  console.log(`retroprop in the browser: http://127.0.0.1:${server.address().port}/ (benchmark: /bench.html)`);
}
