/**
 * What the Redis backends and the factory share about a Redis URL: which schemes
 * are accepted, and how a URL is shown in messages and logs (password hidden).
 */

/** True for a `redis://` or `rediss://` URL, the only schemes the Redis backends take. */
export function isRedisUrl(url: string): boolean {
  return /^rediss?:\/\//.test(url);
}

/**
 * `url` with any password replaced by `***`, for messages and logs. A URL that
 * does not parse has everything between `//` and `@` (the user info) replaced.
 */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password === '') return url;
    parsed.password = '***';
    return parsed.toString();
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//***@');
  }
}
