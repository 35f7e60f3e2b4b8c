// Validates the custom resources kubernetes-validate has no schema for (ServiceMonitor,
// PrometheusRule; a JSON array of objects on stdin) against prometheus-operator's own CRD
// schemas, as compiled by @kubernetes-models/prometheus-operator, which scripts/setup installs
// into target/tools/node. Called by deploy/check.py; exits non-zero on the first bad object.
// The CRD schemas allow unknown fields, so check.py adds its strict subset on top.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const lib = join(
  root,
  "target/tools/node/node_modules/@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/index.js",
);
const models = await import(pathToFileURL(lib));
let failed = 0;
for (const doc of JSON.parse(readFileSync(0, "utf8"))) {
  const Model = models[doc.kind];
  const name = `${doc.kind} ${doc.metadata?.name}`;
  if (!Model) {
    console.error(`${name}: no prometheus-operator schema for this kind`);
    failed++;
    continue;
  }
  try {
    new Model(doc).validate();
    console.log(`${name}: valid against the prometheus-operator CRD schema`);
  } catch (e) {
    console.error(`${name}: ${e.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
