SELECT DISTINCT check_id
FROM check_results
ORDER BY check_id
