// The API reference page: every operation of /openapi.json, its body, answers and a curl line.
// Plain browser JavaScript, no libraries; every value is set as text, never as HTML.
"use strict";

(() => {
  const operations = document.getElementById("operations");
  const status = document.getElementById("status");

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  // A schema in one line: "object {label: string, top: array of ClassScore, ...}".
  function describe(schema, spec, depth = 0) {
    if (!schema) return "";
    if (schema.$ref) {
      const name = schema.$ref.split("/").pop();
      const target = spec.components?.schemas?.[name];
      return depth > 0 || !target ? name : `${name}: ${describe(target, spec, depth + 1)}`;
    }
    if (schema.anyOf) return schema.anyOf.map((s) => describe(s, spec, depth)).join(" or ");
    if (schema.type === "array") return `array of ${describe(schema.items, spec, depth + 1)}`;
    if (schema.type === "object" && schema.properties) {
      const fields = Object.entries(schema.properties)
        .map(([key, value]) => `${key}: ${describe(value, spec, depth + 1)}`);
      return `{${fields.join(", ")}}`;
    }
    if (schema.format === "binary") return "file bytes";
    return schema.type || "any";
  }

  function curl(method, path, request) {
    const types = Object.keys(request?.content || {});
    const origin = window.location.origin;
    if (types.includes("multipart/form-data") && path.endsWith("/batch")) {
      return `curl -F files=@a.jpg -F files=@b.jpg ${origin}${path}`;
    }
    if (types.length) return `curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg' ${origin}${path}`;
    return method === "get" ? `curl ${origin}${path}` : `curl -X ${method.toUpperCase()} ${origin}${path}`;
  }

  function operation(spec, path, method, details) {
    const section = element("section", undefined, "operation");
    const heading = element("h3");
    heading.append(element("code", `${method.toUpperCase()} ${path}`), ` ${details.summary || ""}`);
    section.append(heading);
    if (details.description) section.append(element("p", details.description, "muted"));
    const content = details.requestBody?.content || {};
    if (Object.keys(content).length) {
      section.append(element("h4", "Request body"));
      const list = element("ul");
      for (const [type, body] of Object.entries(content)) {
        list.append(element("li", `${type}: ${describe(body.schema, spec)}`));
      }
      section.append(list);
    }
    section.append(element("h4", "Answers"));
    const answers = element("ul");
    for (const [code, answer] of Object.entries(details.responses || {})) {
      const schema = answer.content?.["application/json"]?.schema;
      const shape = schema ? ` (${describe(schema, spec)})` : "";
      answers.append(element("li", `${code}: ${answer.description || ""}${shape}`));
    }
    section.append(answers);
    section.append(element("pre", curl(method, path, details.requestBody)));
    return section;
  }

  async function main() {
    ursa.showModel(document.getElementById("model"));
    try {
      const response = await fetch("/openapi.json");
      if (!response.ok) throw new Error(`openapi.json: HTTP ${response.status}`);
      const spec = await response.json();
      document.getElementById("title").textContent = `${spec.info.title} ${spec.info.version} API`;
      document.getElementById("summary").textContent = spec.info.summary || "";
      for (const [path, methods] of Object.entries(spec.paths)) {
        for (const [method, details] of Object.entries(methods)) {
          operations.append(operation(spec, path, method, details));
        }
      }
      status.textContent = `${operations.children.length} operations`;
    } catch (error) {
      status.textContent = String(error);
      status.className = "error";
    }
  }

  main();
})();
