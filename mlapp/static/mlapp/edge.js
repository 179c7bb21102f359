/* mlapp in the browser: run a model's ONNX version with ONNX Runtime Web (WebAssembly).
 *
 * Load after ort.wasm.min.js (the {% mlapp_edge_scripts %} tag writes both tags):
 *
 *   <script src=".../mlapp/ort/ort.wasm.min.js"></script>
 *   <script src=".../mlapp/edge.js" data-ort-base=".../mlapp/ort/"></script>
 *
 * window.mlappEdge.run(modelUrl, signature, inputs) -> {outputName: {dims, data}}
 *   signature: the version's artifact signature ({inputs: [{name, datatype, shape}], ...});
 *   inputs: what the native predict API takes as "inputs" (one input's nested list, or an
 *   object of them by name).
 * window.mlappEdge.compare(serverOutputs, browserOutputs) -> {name: largest difference}
 *
 * An element with data-mlapp-edge (the admin's "Try it") gets a button that runs the inputs of
 * its textarea here and on the server and shows both answers with the largest difference:
 *   data-model-url   where the ONNX file is downloaded from
 *   data-server-url  where the same inputs are POSTed ({"inputs": ...} -> {"outputs": ...})
 *   data-signature   the artifact signature, JSON
 *   data-input       a CSS selector of the textarea holding {"inputs": ...} (default: textarea)
 * Nothing is fetched from anywhere but these URLs and the static files.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  var ortBase = (script && script.dataset.ortBase) || "";
  var sessions = {};
  var ARRAYS = {
    FP32: Float32Array, FP64: Float64Array, INT32: Int32Array, INT16: Int16Array,
    INT8: Int8Array, UINT8: Uint8Array, BOOL: Uint8Array, INT64: BigInt64Array,
  };
  var TYPES = {
    FP32: "float32", FP64: "float64", INT32: "int32", INT16: "int16", INT8: "int8",
    UINT8: "uint8", BOOL: "bool", INT64: "int64",
  };

  function configure() {
    if (typeof ort === "undefined") {
      throw new Error("ONNX Runtime Web is not loaded (mlapp/ort/ort.wasm.min.js).");
    }
    if (ortBase) { ort.env.wasm.wasmPaths = ortBase; }
    ort.env.wasm.numThreads = 1; // no cross-origin isolation needed
  }

  function session(url) {
    if (!sessions[url]) {
      configure();
      sessions[url] = fetch(url, {credentials: "same-origin"}).then(function (response) {
        if (!response.ok) { throw new Error("Model download: HTTP " + response.status); }
        return response.arrayBuffer();
      }).then(function (bytes) {
        return ort.InferenceSession.create(new Uint8Array(bytes), {executionProviders: ["wasm"]});
      });
      sessions[url].catch(function () { delete sessions[url]; });
    }
    return sessions[url];
  }

  function shapeOf(value) {
    var dims = [];
    while (Array.isArray(value)) { dims.push(value.length); value = value[0]; }
    return dims;
  }

  function tensor(spec, value) {
    var Kind = ARRAYS[spec.datatype];
    if (!Kind) { throw new Error("Input " + spec.name + " (" + spec.datatype + ") needs the server."); }
    var dims = shapeOf(value);
    var flat = Array.isArray(value) ? value.flat(Infinity) : [value];
    if (dims.length === spec.shape.length - 1) { dims = [1].concat(dims); }
    if (dims.length !== spec.shape.length) {
      throw new Error("Input " + spec.name + " has " + dims.length + " dimensions; the model takes " +
                      spec.shape.length + ".");
    }
    var data = Kind === BigInt64Array ? BigInt64Array.from(flat.map(function (v) { return BigInt(v); }))
                                      : Kind.from(flat.map(Number));
    return new ort.Tensor(TYPES[spec.datatype], data, dims);
  }

  function named(signature, inputs) {
    if (Array.isArray(inputs) || typeof inputs !== "object") {
      var one = {};
      one[signature.inputs[0].name] = inputs;
      return one;
    }
    return inputs;
  }

  async function run(url, signature, inputs) {
    var model = await session(url);
    var values = named(signature, inputs);
    var feeds = {};
    signature.inputs.forEach(function (spec) {
      if (!(spec.name in values)) { throw new Error("Missing input " + spec.name + "."); }
      feeds[spec.name] = tensor(spec, values[spec.name]);
    });
    var results = await model.run(feeds);
    var outputs = {};
    Object.keys(results).forEach(function (name) {
      var data = results[name].data;
      outputs[name] = {dims: results[name].dims.slice(),
                       data: Array.from(data, function (v) { return Number(v); })};
    });
    return outputs;
  }

  function compare(server, browser) {
    var diffs = {};
    Object.keys(browser).forEach(function (name) {
      if (!(name in server)) { return; }
      var theirs = [].concat(server[name]).flat(Infinity);
      var ours = browser[name].data;
      if (theirs.length !== ours.length || typeof theirs[0] !== "number") { return; }
      var largest = 0;
      for (var i = 0; i < ours.length; i++) {
        largest = Math.max(largest, Math.abs(theirs[i] - ours[i]));
      }
      diffs[name] = largest;
    });
    return diffs;
  }

  function csrfToken(root) {
    var field = root.querySelector("input[name=csrfmiddlewaretoken]");
    if (field) { return field.value; }
    var match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function show(box, rows, largest, error) {
    box.textContent = "";
    if (error) {
      var p = document.createElement("p");
      p.className = "errornote mlapp-browser-error";
      p.textContent = error;
      box.appendChild(p);
      return;
    }
    var table = document.createElement("table");
    table.className = "mlapp-side-by-side";
    table.innerHTML = "<thead><tr><th>output</th><th>server</th><th>this browser</th>" +
                      "<th>largest difference</th></tr></thead>";
    var body = document.createElement("tbody");
    rows.forEach(function (row) {
      var tr = document.createElement("tr");
      row.forEach(function (cell) {
        var td = document.createElement("td");
        td.textContent = cell;
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    table.appendChild(body);
    box.appendChild(table);
    var summary = document.createElement("p");
    summary.className = "mlapp-largest-difference";
    summary.textContent = "Largest difference between the server and this browser: " +
                          (largest === null ? "—" : largest.toExponential(2));
    box.appendChild(summary);
  }

  function short(values) {
    var text = JSON.stringify(values);
    return text.length > 240 ? text.slice(0, 240) + "…" : text;
  }

  async function tryBoth(root, box) {
    var field = document.querySelector(root.dataset.input || "textarea");
    if (!field) { throw new Error("No input field " + (root.dataset.input || "textarea") + "."); }
    var body = JSON.parse(field.value);
    var inputs = body && typeof body === "object" && "inputs" in body ? body.inputs : body;
    var signature = JSON.parse(root.dataset.signature);
    var server = await fetch(root.dataset.serverUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrfToken(root)},
      body: JSON.stringify({inputs: inputs}),
    }).then(function (response) { return response.json(); });
    if (server.error) { throw new Error("Server: " + server.error); }
    var browser = await run(root.dataset.modelUrl, signature, inputs);
    var diffs = compare(server.outputs, browser);
    var names = Object.keys(diffs);
    var largest = names.length ? Math.max.apply(null, names.map(function (n) { return diffs[n]; })) : null;
    var rows = names.map(function (name) {
      var ours = browser[name].data.map(function (v) { return Number(v.toPrecision(7)); });
      return [name, short(server.outputs[name]), short(ours), diffs[name].toExponential(2)];
    });
    show(box, rows, largest, null);
    box.dataset.maxDiff = largest === null ? "" : String(largest);
    box.dataset.browser = JSON.stringify(browser);
    box.dataset.server = JSON.stringify(server.outputs);
  }

  function wire(root) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "button mlapp-browser-run";
    button.textContent = root.dataset.label || "Run in this browser too";
    var box = document.createElement("div");
    box.className = "mlapp-browser-result";
    box.id = "mlapp-browser-result";
    button.addEventListener("click", function () {
      box.textContent = "Running…";
      delete box.dataset.maxDiff;
      tryBoth(root, box).catch(function (error) {
        show(box, [], null, String(error && error.message || error));
        box.dataset.error = String(error && error.message || error);
      });
    });
    root.appendChild(button);
    root.appendChild(box);
  }

  window.mlappEdge = {run: run, compare: compare, session: session};
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-mlapp-edge]").forEach(wire);
  });
})();
