// Upload a file with tus-js-client as ioGates' web uploader does: in parallel parts
// (`Upload-Concat: partial`), then the final concatenation. Usage:
//   node upload.mjs <file> <endpoint> <parts> <chunk bytes>
// Prints one JSON line: the upload's URL and every response (method, status, Upload-Concat kind).
// Any failure exits 1 with the error on stderr (no retries: a refusal must show).
import { readFileSync } from 'node:fs';
import * as tus from 'tus-js-client';

const [file, endpoint, parts, chunkSize] = process.argv.slice(2);
const responses = [];
const upload = new tus.Upload(readFileSync(file), {
  endpoint,
  parallelUploads: Number(parts),
  chunkSize: Number(chunkSize),
  retryDelays: null,
  metadata: { filename: 'proof.bin', filetype: 'application/octet-stream' },
  onAfterResponse(req, res) {
    const concat = req.getHeader('Upload-Concat');
    responses.push({
      method: req.getMethod(),
      status: res.getStatus(),
      concat: concat ? concat.split(';')[0] : null,
    });
  },
  onSuccess() {
    console.log(JSON.stringify({ url: upload.url, responses }));
  },
  onError(error) {
    console.error(String(error));
    process.exit(1);
  },
});
upload.start();
