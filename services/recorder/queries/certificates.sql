SELECT
    check_id,
    site,
    max(started_at) AS last_seen,
    argMax(tls_peer_not_after, started_at) AS not_after,
    argMax(tls_days_left, started_at) AS days_left,
    argMax(tls_verified, started_at) AS verified,
    argMax(tls_hostname_match, started_at) AS hostname_match,
    argMax(tls_peer_subject, started_at) AS subject
FROM check_results FINAL
WHERE kind != 'roundtrip'
    AND tls_peer_not_after IS NOT NULL
    AND started_at >= $__fromTime AND started_at < $__toTime
GROUP BY check_id, site
ORDER BY days_left, check_id, site
