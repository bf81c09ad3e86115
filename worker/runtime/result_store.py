"""Celery's Redis result backend, storing a task's state in one round trip instead of two.

Celery's key-value backends read a task's stored state before writing a new one, so that a late
duplicate never overwrites a SUCCESS (`BaseKeyValueStoreBackend._store_result`): a GET, then a
pipeline of SET and PUBLISH. Every task pays that second round trip when its result is stored; in
the worker profile it was a quarter of a pool child's busy time on `process_article`. Here the
check and the write are one Lua script: the same rule, and now atomic as well (two workers
storing the same task's state can no longer interleave between the check and the write).

Installed through Celery's `override_backends` setting for `redis://` and `rediss://` result
backends (celeryconfig); everything else (reading results, expiry settings, retries, the
result subscription) is Celery's `RedisBackend` unchanged.
"""

from __future__ import annotations

from typing import Any, cast

from celery import states
from celery.backends.redis import RedisBackend
from celery.exceptions import BackendStoreError
from kombu.utils.encoding import bytes_to_str

# KEYS[1]: the task's key. ARGV[1]: the encoded state; ARGV[2]: seconds to keep it (0: forever).
# Returns 0 when a SUCCESS was already stored (nothing written), 1 when written and published.
_STORE_UNLESS_SUCCEEDED = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok then
    if type(meta) == 'table' and meta['status'] == 'SUCCESS' then return 0 end
  elseif string.find(current, '"status": "SUCCESS"', 1, true) then
    return 0
  end
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
"""


class RedisResults(RedisBackend):
    """`RedisBackend` whose state writes check for a stored SUCCESS inside Redis."""

    _script: Any = None

    def _store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: Any = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        # celery-types does not declare the base class's helpers and attributes used here.
        backend = cast(Any, self)
        meta = backend._get_result_meta(
            result=result, state=state, traceback=traceback, request=request
        )
        meta["task_id"] = bytes_to_str(task_id)
        value = self.encode(meta)
        if isinstance(value, str) and len(value) > self._MAX_STR_VALUE_SIZE:
            raise BackendStoreError(
                "value too large for Redis backend", state=state, task_id=task_id
            )
        expires = backend.failure_expires if state == states.FAILURE else backend.expires
        key = self.get_key_for_task(task_id)
        # Not under `ensure` (the backend's own reconnect policy, about 2 s of tries): Celery's
        # read that this replaces fails at once when Redis is down, and its caller
        # (`Backend._ensure_retryable`) retries the whole store with backoff. Wrapped twice, an
        # outage held each task ten times as long before its STARTED was given up.
        self._store_unless_succeeded(key, value, int(expires or 0))
        return result

    def _store_unless_succeeded(self, key: bytes | str, value: str | bytes, expires: int) -> int:
        client = self.client
        script = self._script
        if script is None:
            script = self._script = client.register_script(_STORE_UNLESS_SUCCEEDED)
        return int(script(keys=[key], args=[value, expires], client=client))
