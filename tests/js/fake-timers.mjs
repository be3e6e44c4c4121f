// Timers a test fires by hand: setTimeout records, runAll fires everything pending at once and
// returns the delays that were asked for, so backoff and scheduling are checked without waiting.
export function fakeTimers() {
  const pending = new Map();
  let next = 1;
  return {
    pending,
    setTimeout(callback, ms) {
      pending.set(next, { callback, ms });
      return next++;
    },
    clearTimeout(id) {
      pending.delete(id);
    },
    runAll() {
      const due = Array.from(pending.values());
      pending.clear();
      for (const { callback } of due) callback();
      return due.map(({ ms }) => ms);
    },
  };
}
