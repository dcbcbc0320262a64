SELECT
    toStartOfDay(started_at) AS day,
    count() AS attempts,
    countIf(status = 'slow') AS slow,
    countIf(status = 'timeout') AS timeouts,
    round(countIf(status = 'slow') / count(), 4) AS slow_share
FROM check_results FINAL
WHERE check_id = '${check}'
    AND kind = 'roundtrip'
    AND status != 'monitor_error'
    AND started_at >= $__fromTime AND started_at < $__toTime
GROUP BY day
ORDER BY day
