SELECT
    toStartOfHour(started_at) AS hour,
    site,
    count() AS attempts,
    count(rtt_ms) AS returned,
    quantileExact(0.5)(rtt_ms) AS p50_ms,
    quantileExact(0.9)(rtt_ms) AS p90_ms,
    quantileExact(0.99)(rtt_ms) AS p99_ms
FROM check_results FINAL
WHERE check_id = '${check}'
    AND kind = 'roundtrip'
    AND started_at >= $__fromTime AND started_at < $__toTime
GROUP BY hour, site
ORDER BY hour, site
