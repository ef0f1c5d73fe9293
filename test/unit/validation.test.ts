import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JSON_DEPTH_MAX, STRING_PROBLEMS_MAX, inspectJson, unstorableTextReason, validateDocumentInput } from '../../schema/validation.ts';

test('unstorableTextReason: NUL and lone surrogates are refused, well-formed unicode is not', () => {
  const refused: [string, RegExp][] = [
    ['\u0000', /NUL .* index 0/],
    ['abc\u0000', /NUL .* index 3/],
    ['\ud800', /U\+D800\) at index 0/],
    ['a\ud83d', /U\+D83D\) at index 1/],
    ['\udc00b', /U\+DC00\) at index 0/],
    ['\ude00\ud83d', /U\+DE00\) at index 0/], // a pair in the wrong order is two lone halves
    ['\u{1F600}\ud800', /U\+D800\) at index 2/],
  ];
  for (const [text, reason] of refused) assert.match(unstorableTextReason(text) ?? '', reason, JSON.stringify(text));
  for (const text of ['', 'plain', '\u{1F600}', '\ud83d\ude00', '\u{10FFFF}', '\uFFFF', '\uFFFD', 'e\u0301', '日本語', '\u0001\u001f']) {
    assert.equal(unstorableTextReason(text), undefined, JSON.stringify(text));
  }
});

test('inspectJson: names each bad string or key by its path, at most STRING_PROBLEMS_MAX', () => {
  const { tooDeep, unstorableStrings } = inspectJson({ name: 'a\u0000', content: { list: ['ok', '\ud800'], 'odd key\u0000': 1, x: { '\udfff': true } } });
  assert.equal(tooDeep, undefined);
  assert.deepEqual(unstorableStrings.map((p) => p.field), ['name', 'content.list[1]', 'content["odd key\\u0000"]', 'content.x["\\udfff"]']);
  assert.match(unstorableStrings[2]!.message, /^has a key that contains a NUL/);
  const many = inspectJson({ content: Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`k${i}`, '\u0000'])) });
  assert.equal(many.unstorableStrings.length, STRING_PROBLEMS_MAX);
});

test('inspectJson: nesting is refused past JSON_DEPTH_MAX, without recursion', () => {
  const nest = (levels: number, leaf: unknown = 1) => {
    let value: unknown = leaf;
    for (let i = 0; i < levels; i++) value = i % 2 ? [value] : { a: value };
    return value;
  };
  assert.equal(inspectJson({ content: nest(JSON_DEPTH_MAX) }).tooDeep, undefined);
  assert.equal(inspectJson({ content: nest(JSON_DEPTH_MAX + 1) }).tooDeep?.field, 'content');
  // Deeper than the call stack allows: JSON.stringify on this value throws RangeError.
  const deep = { content: nest(200_000) };
  assert.throws(() => JSON.stringify(deep), RangeError);
  assert.equal(inspectJson(deep).tooDeep?.field, 'content');
  assert.deepEqual(validateDocumentInput({ type: 'mood', name: 'x', content: nest(200_000) }).map((p) => p.field), ['content']);
  // Wide is fine: only depth is limited.
  assert.equal(inspectJson({ content: { list: Array.from({ length: 100_000 }, (_, i) => ({ i })) } }).tooDeep, undefined);
});
