// REST calls of the page: same-origin, session-authenticated, CSRF header on writes; errors
// arrive in Alpaca's shape {"code", "message"} and surface as ApiError with that message.

export function readCookie(name, cookieString = globalThis.document ? document.cookie : "") {
  for (const part of cookieString.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

/** The message to show for a failed call: the server's Alpaca message when there is one. */
export function errorMessage(error) {
  if (error instanceof ApiError) return error.message;
  if (error && error.name === "TypeError") return "The server could not be reached; try again.";
  return (error && error.message) || "Something went wrong.";
}

export class ApiClient {
  constructor({ fetchImpl = globalThis.fetch.bind(globalThis), csrfToken = () => readCookie("csrftoken") } = {}) {
    this.fetchImpl = fetchImpl;
    this.csrfToken = csrfToken;
    this.calls = 0;
  }

  get(path, options) {
    return this.request("GET", path, undefined, options);
  }

  post(path, body, options) {
    return this.request("POST", path, body, options);
  }

  delete(path, options) {
    return this.request("DELETE", path, undefined, options);
  }

  async request(method, path, body, { signal, keepalive = false } = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET") headers["X-CSRFToken"] = this.csrfToken();
    this.calls += 1;
    const response = await this.fetchImpl(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      signal,
      keepalive,
    });
    if (response.status === 204) return null;
    let data = null;
    const text = await response.text();
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!response.ok) {
      const message =
        (data && typeof data.message === "string" && data.message) ||
        (response.status === 403 || response.status === 401
          ? "You are signed out or not allowed to do that; reload the page to sign in."
          : `The server answered ${response.status}.`);
      throw new ApiError(response.status, data && data.code, message);
    }
    return data;
  }
}
