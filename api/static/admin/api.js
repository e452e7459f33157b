// The /v1 API as the page uses it: JSON in and out, the API key as a Bearer header,
// errors as ApiError carrying the server's {"error": {"code", "message"}}.

const KEY_STORAGE = "ragnet.admin.apiKey";
let memoryKey = null; // the key saved in this page, should localStorage be unavailable

// The page lives at <base>admin; the API at <base>v1/... (works behind a path prefix too).
export const apiBase = new URL(location.pathname.replace(/admin\/?$/, ""), location.origin);

export function getKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

export function setKey(value) {
  try {
    if (value) localStorage.setItem(KEY_STORAGE, value);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    /* storage disabled: the key lasts for this page only */
  }
  memoryKey = value;
}

function currentKey() {
  return memoryKey ?? getKey();
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }

  get isAuth() {
    return this.status === 401 || this.status === 403;
  }
}

export function apiUrl(path, query) {
  const url = new URL(path.replace(/^\//, ""), apiBase);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, String(value));
  }
  return url;
}

/** An encoded path segment: KB names, document ids and FAQ ids may hold any character. */
export function seg(value) {
  return encodeURIComponent(String(value));
}

function authHeaders(extra = {}) {
  const headers = { Accept: "application/json", ...extra };
  const key = currentKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  return headers;
}

export function errorFrom(status, text) {
  let code = `http_${status}`;
  let message = "";
  try {
    const body = JSON.parse(text);
    if (body && typeof body.error === "object" && body.error) {
      code = body.error.code || code;
      message = body.error.message || "";
    } else if (body && body.detail) {
      message = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    }
  } catch {
    message = (text || "").trim().slice(0, 300);
  }
  if (!message) message = `the server answered HTTP ${status}`;
  if (status === 401 || status === 403) {
    const what = currentKey()
      ? "The API key saved here was refused"
      : "This server requires an API key";
    message = `${what}: enter a valid key in the “API key” field at the top and press Save. (HTTP ${status}: ${message})`;
  } else if (status === 413 && code === `http_${status}`) {
    message = `Too large: ${message}`;
  }
  return new ApiError(status, code, message);
}

/** One API call. Resolves to the parsed JSON body (null for 204), rejects with ApiError. */
export async function api(method, path, { json, query, signal } = {}) {
  const init = { method, headers: authHeaders(), signal };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(apiUrl(path, query), init);
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, "network", `Could not reach the server (${err && err.message ? err.message : err}).`);
  }
  const text = await response.text();
  if (!response.ok) throw errorFrom(response.status, text);
  if (response.status === 204 || !text) return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(response.status, "bad_response", "The server sent a response that is not JSON.");
  }
}

/**
 * A multipart POST through XMLHttpRequest, for its upload progress events.
 * onProgress(fraction | null, loaded, total). Returns {promise, abort}.
 */
export function upload(path, formData, onProgress) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open("POST", apiUrl(path));
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => {
      if (onProgress) onProgress(event.lengthComputable ? event.loaded / event.total : null, event.loaded, event.total);
    };
    xhr.upload.onload = () => onProgress && onProgress(1);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve(xhr.responseText ? JSON.parse(xhr.responseText) : null);
        } catch {
          reject(new ApiError(xhr.status, "bad_response", "The server sent a response that is not JSON."));
        }
      } else {
        reject(errorFrom(xhr.status, xhr.responseText));
      }
    };
    xhr.onerror = () =>
      reject(
        new ApiError(
          0,
          "network",
          "The upload failed: the connection was lost or refused (a file over the server's size limit can cause this).",
        ),
      );
    xhr.onabort = () => reject(new ApiError(0, "aborted", "Upload cancelled."));
    xhr.send(formData);
  });
  return { promise, abort: () => xhr.abort() };
}
