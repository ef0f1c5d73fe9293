/** The reference API's settings from the environment: defaults, and a clear error naming a bad variable. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../../app/config.ts';

test('DURABLE_WRITES and DURABLE_TIMEOUT_MS: off and the library default unless set; a bad value names the variable', () => {
  const defaults = loadConfig({});
  assert.equal(defaults.durableWrites, false);
  assert.equal(defaults.durableTimeoutMs, undefined);
  for (const [raw, expected] of [['true', true], ['1', true], ['false', false], ['0', false], ['', false], [' true ', true]] as const) {
    assert.equal(loadConfig({ DURABLE_WRITES: raw }).durableWrites, expected, JSON.stringify(raw));
  }
  assert.equal(loadConfig({ DURABLE_TIMEOUT_MS: '5000' }).durableTimeoutMs, 5000);
  assert.throws(() => loadConfig({ DURABLE_WRITES: 'yes please' }), /DURABLE_WRITES must be true or false \(or 1 or 0\); got "yes please"/);
  assert.throws(() => loadConfig({ DURABLE_TIMEOUT_MS: '0' }), /DURABLE_TIMEOUT_MS must be a whole number between 1 and/);
  assert.throws(() => loadConfig({ DURABLE_TIMEOUT_MS: '2s' }), /DURABLE_TIMEOUT_MS must be a whole number/);
});
