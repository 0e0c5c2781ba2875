// The one way a test says it needs a real component (nginx, Chromium, gdb and ptrace, root for a
// mount, the shared image corpus). On a developer's machine a missing component skips with the
// reason, counted in the summary's `skipped`; under CI=true (.ci/run) it fails the run, so a CI
// log can never read "skipped 0" while whole suites did not run.
import { test, type TestContext } from 'node:test';

/** CI=true, as .ci/run exports it. */
export function underCi(): boolean {
  return process.env.CI === 'true';
}

function missing(name: string, reason: string): string {
  return `${name} is not available: ${reason}`;
}

/**
 * The `skip` option for a suite or test that needs `name`: `false` when `found`. Otherwise it
 * registers a test "requires <name>" that fails under CI=true and is skipped (with the reason)
 * elsewhere, and returns the reason for the suite's `skip`. Call it at a file's top level.
 */
export function requireComponent(name: string, found: boolean, reason: string): string | false {
  if (found) return false;
  const message = missing(name, reason);
  if (underCi()) {
    test(`requires ${name}`, () => {
      throw new Error(`CI=true and ${message}`);
    });
  } else {
    test(`requires ${name}`, { skip: message }, () => {});
  }
  return message;
}

/**
 * Inside a running test: true when `found`. Otherwise it fails the test under CI=true (throws)
 * and elsewhere skips it with the reason and returns false (the caller returns).
 */
export function requireComponentIn(t: TestContext, name: string, found: boolean, reason: string): boolean {
  if (found) return true;
  const message = missing(name, reason);
  if (underCi()) throw new Error(`CI=true and ${message}`);
  t.skip(message);
  return false;
}
