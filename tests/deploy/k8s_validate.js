// Validates Kubernetes objects offline against the JSON schemas of the Kubernetes API, with the
// npm package kubernetes-models (deploy/install-deps.sh installs it globally; NODE_PATH points at
// npm's global root). Types, required fields, enums and formats are checked; fields the schema
// does not know are not.
//
// usage: node k8s_validate.js < OBJECTS.json   (a JSON array of objects)
// Prints one line per object ("ok KIND/NAME" or "invalid KIND/NAME: ERRORS"); exits 1 when one is
// invalid or has no schema, 77 when kubernetes-models cannot be loaded.
"use strict";

let models;
try {
  models = require("kubernetes-models");
} catch (e) {
  console.log(`kubernetes-models not found (deploy/install-deps.sh): ${e.message.split("\n")[0]}`);
  process.exit(77);
}

const objects = JSON.parse(require("fs").readFileSync(0, "utf8"));
let bad = 0;
for (const o of objects) {
  const name = `${o.kind}/${o.metadata && o.metadata.name}`;
  const slash = o.apiVersion.indexOf("/");
  const module = slash < 0 ? `kubernetes-models/${o.apiVersion}`
                           : `kubernetes-models/${o.apiVersion.slice(0, slash)}/` +
                             o.apiVersion.slice(slash + 1);
  let Model;
  try {
    Model = require(module)[o.kind];
  } catch (e) {
    Model = undefined;
  }
  if (Model === undefined) {
    console.log(`invalid ${name}: no schema for ${o.apiVersion} ${o.kind}`);
    bad++;
    continue;
  }
  try {
    new Model(o).validate();
    console.log(`ok ${name}`);
  } catch (e) {
    console.log(`invalid ${name}: ${e.message}`);
    bad++;
  }
}
process.exit(bad ? 1 : 0);
