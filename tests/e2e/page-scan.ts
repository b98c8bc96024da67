// Crawls the page and every same-origin asset it links (src/href, CSS url()/@import, JS imports)
// and reports external URL references and wrong content types. Used by the black-box suite.

export interface ScannedAsset {
  url: string;
  status: number;
  contentType: string;
  /** External references found in the body (http://, https://, ws://, protocol-relative //host). */
  external: string[];
  /** Why the content type looks wrong for the path, if it does. */
  typeProblem?: string;
}

/** Content type expected for a path's extension (prefix match, case-insensitive). */
const EXPECTED_TYPES: Record<string, string[]> = {
  html: ["text/html"],
  js: ["text/javascript", "application/javascript"],
  mjs: ["text/javascript", "application/javascript"],
  css: ["text/css"],
  svg: ["image/svg+xml"],
  png: ["image/png"],
  jpg: ["image/jpeg"],
  jpeg: ["image/jpeg"],
  gif: ["image/gif"],
  webp: ["image/webp"],
  ico: ["image/x-icon", "image/vnd.microsoft.icon"],
  json: ["application/json"],
  webmanifest: ["application/manifest+json", "application/json"],
  txt: ["text/plain"],
  woff: ["font/woff"],
  woff2: ["font/woff2"],
};

function expectedTypes(pathname: string): string[] | undefined {
  const last = pathname.split("/").pop() ?? "";
  if (pathname.endsWith("/")) return ["text/html"];
  const dot = last.lastIndexOf(".");
  if (dot < 0) return undefined;
  return EXPECTED_TYPES[last.slice(dot + 1).toLowerCase()];
}

const TEXTUAL = /^(text\/|application\/(javascript|json|manifest\+json|xml)|image\/svg\+xml)/i;

/** Absolute URLs with a scheme that would load or link something off the server. */
const ABSOLUTE = /\b(?:https?|wss?|ftp):\/\/[^\s"'`<>)]*/gi;
/** Protocol-relative references: `src="//cdn..."`, `url(//cdn...)`, `"//cdn.example.com/x"` in code. */
const PROTOCOL_RELATIVE = /(?:["'`(=]\s*)\/\/[a-z0-9-]+(?:\.[a-z0-9-]+)+[^\s"'`<>)]*/gi;
/** XML namespace names are identifiers, not references (inline or standalone SVG). */
const XMLNS = /\bxmlns(?::[\w-]+)?\s*=\s*(["'])[^"']*\1/gi;

export function findExternalReferences(body: string): string[] {
  const cleaned = body.replace(XMLNS, "");
  return [...(cleaned.match(ABSOLUTE) ?? []), ...(cleaned.match(PROTOCOL_RELATIVE) ?? [])];
}

/** Every reference in a textual body that could be an asset of the page. */
export function findLinks(body: string, contentType: string): string[] {
  const out: string[] = [];
  const add = (re: RegExp) => {
    for (const m of body.matchAll(re)) if (m[2] !== undefined) out.push(m[2]);
  };
  if (/html/i.test(contentType)) {
    add(/\b(src|href|poster|data-src)\s*=\s*["']([^"']*)["']/gi);
    add(/\b(src|href)\s*=\s*([^\s"'>]+)/gi); // unquoted attribute values
    for (const m of body.matchAll(/\bsrcset\s*=\s*["']([^"']*)["']/gi)) {
      for (const part of (m[1] ?? "").split(",")) {
        const url = part.trim().split(/\s+/)[0];
        if (url) out.push(url);
      }
    }
  }
  if (/css|html/i.test(contentType)) {
    add(/(url)\(\s*["']?([^"')]+)["']?\s*\)/gi);
    add(/(@import)\s+["']([^"']+)["']/gi);
  }
  if (/json/i.test(contentType)) {
    add(/"(src|href|start_url)"\s*:\s*"([^"]+)"/g); // web app manifest icons and start URL
  }
  if (/javascript/i.test(contentType)) {
    add(/\b(from)\s*["']([^"']+)["']/g);
    add(/\b(import)\s*\(\s*["']([^"']+)["']\s*\)/g);
    add(/\b(import)\s+["']([^"']+)["']/g);
    add(/new\s+(URL)\(\s*["']([^"']+)["']\s*,\s*import\.meta\.url\s*\)/g);
  }
  return out.filter((u) => u !== "" && !u.startsWith("#") && !/^(data|blob|javascript|mailto):/i.test(u));
}

/** Fetches `start` and every same-origin asset reachable from it (at most `limit` URLs). */
export async function scanPage(start: string, limit = 60): Promise<ScannedAsset[]> {
  const origin = new URL(start).origin;
  const seen = new Set<string>();
  const queue = [new URL(start).href];
  const results: ScannedAsset[] = [];
  while (queue.length > 0 && seen.size < limit) {
    const url = queue.shift()!;
    if (seen.has(url)) continue;
    seen.add(url);
    const res = await fetch(url, { redirect: "manual" });
    const contentType = res.headers.get("content-type") ?? "";
    const asset: ScannedAsset = { url, status: res.status, contentType, external: [] };
    const expected = expectedTypes(new URL(url).pathname);
    if (!contentType) asset.typeProblem = "no Content-Type";
    else if (expected && !expected.some((t) => contentType.toLowerCase().startsWith(t))) {
      asset.typeProblem = `expected ${expected.join(" or ")}, got ${contentType}`;
    }
    if (TEXTUAL.test(contentType)) {
      const body = await res.text();
      asset.external = findExternalReferences(body);
      for (const link of findLinks(body, contentType)) {
        let abs: URL;
        try {
          abs = new URL(link, url);
        } catch {
          continue;
        }
        // An off-origin link is already reported by findExternalReferences.
        if (abs.origin !== origin) continue;
        abs.hash = "";
        if (!seen.has(abs.href)) queue.push(abs.href);
      }
    } else {
      await res.arrayBuffer();
    }
    results.push(asset);
  }
  return results;
}
