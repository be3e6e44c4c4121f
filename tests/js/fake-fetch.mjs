// A fetch that answers the bodies given, in order (an Error is thrown instead of answered, as a
// network failure), and records the URLs asked for: the pollers' tests (the game page's board,
// the dashboard's game board) check what was fetched and what a failure keeps, without a server.
export function answers(...bodies) {
  const calls = [];
  const fetchImpl = async (url) => {
    calls.push(url);
    const next = bodies.shift();
    if (next instanceof Error) throw next;
    return { ok: true, json: async () => next };
  };
  return { calls, fetchImpl };
}

/** Resolves once the promises a poll started (the fetch, its json()) have run their callbacks. */
export const settle = () => new Promise((resolve) => setImmediate(resolve));
