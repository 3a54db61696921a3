// Alert rules of cognito-import-exporter; the selectors and thresholds come from _config.
//
// Per-job series exist only for active jobs and jobs finished in the last 24 hours, and they
// vanish while a collection of their pool fails. The job alerts read them through
// last_over_time(...[15m]), so a failed collection shorter than the
// CognitoUserImportScrapeFailing threshold does not resolve and re-fire every job alert; a job
// that has since been seen in another status ends its alert at once.
{
  prometheusAlerts+:: {
    groups+: [
      {
        name: "cognito-user-import-jobs",
        rules: [
        {
          alert: "CognitoUserImportJobFailed",
          expr: |||
            max by (user_pool_id, job_id, job_name) (
              last_over_time(cognito_user_import_job_info{%(cognitoImportSelector)s, status="Failed"}[15m])
            )
          ||| % $._config,
          'for': "0m",
          labels: { severity: "warning" },
          annotations: {
            summary: "A user import job failed.",
            description: "Cognito reports user import job {{ $labels.job_name }} ({{ $labels.job_id }}) in user pool {{ $labels.user_pool_id }} as Failed. Users in its CSV file after the point of failure were not imported. The alert clears 24 hours after the job completed, when the job leaves the exporter's per-job series.",
            runbook: |||-
              1. Read the job's completion message:
                 aws cognito-idp describe-user-import-job --region {{ reReplaceAll "_.*$" "" $labels.user_pool_id }} --user-pool-id {{ $labels.user_pool_id }} --job-id {{ $labels.job_id }}
              2. Read the job's CloudWatch Logs: log group /aws/cognito/userpools/{{ $labels.user_pool_id }}/<pool name>, stream {{ $labels.job_id }}/{{ $labels.job_name }}.
              3. Cognito fails a whole job when it cannot parse the CSV file, when the job's CloudWatch Logs role cannot be assumed or lacks permissions, or when the user pool was deleted. Fix the cause, then create and start a new job with the users that were not imported.
            |||,
          },
        },
        {
          alert: "CognitoUserImportPoolFailedJobsIncreased",
          expr: |||
            max by (user_pool_id) (
              delta(cognito_user_import_jobs{%(cognitoImportSelector)s, status="Failed"}[1h])
            ) > 0
            unless on (user_pool_id)
              last_over_time(cognito_user_import_job_info{%(cognitoImportSelector)s, status="Failed"}[15m])
          ||| % $._config,
          'for': "0m",
          labels: { severity: "warning" },
          annotations: {
            summary: "More user import jobs failed in a user pool.",
            description: "The number of Failed import jobs in user pool {{ $labels.user_pool_id }} rose in the last hour, but no recent failed job is among the exporter's per-job series, so CognitoUserImportJobFailed cannot name it. This happens when more than scrape.max_jobs_per_pool newer jobs crowd it out, or when that setting is 0.",
            runbook: |||-
              1. Find the failed jobs, newest first:
                 aws cognito-idp list-user-import-jobs --region {{ reReplaceAll "_.*$" "" $labels.user_pool_id }} --user-pool-id {{ $labels.user_pool_id }} --max-results 60 --query "UserImportJobs[?Status=='Failed'].[JobId,JobName,CompletionDate,CompletionMessage]"
              2. Follow the CognitoUserImportJobFailed runbook for each of them.
              3. To have such jobs named in alerts, raise scrape.max_jobs_per_pool in the exporter's configuration.
            |||,
          },
        },
        {
          alert: "CognitoUserImportJobUsersFailed",
          expr: |||
            (
              max by (user_pool_id, job_id) (
                last_over_time(cognito_user_import_job_users{%(cognitoImportSelector)s, outcome="failed"}[15m])
              ) > 0
            )
            * on (user_pool_id, job_id) group_left (job_name)
              max by (user_pool_id, job_id, job_name) (
                last_over_time(cognito_user_import_job_info{%(cognitoImportSelector)s}[15m])
              )
          ||| % $._config,
          'for': "0m",
          labels: { severity: "warning" },
          annotations: {
            summary: "A user import job could not import some of its users.",
            description: "Import job {{ $labels.job_name }} ({{ $labels.job_id }}) in user pool {{ $labels.user_pool_id }} could not import {{ $value }} of the users in its CSV file; the job itself went on with the other users. Those users do not exist in the pool.",
            runbook: |||-
              1. Open the job's CloudWatch Logs: log group /aws/cognito/userpools/{{ $labels.user_pool_id }}/<pool name>, stream {{ $labels.job_id }}/{{ $labels.job_name }}. Each [FAILED] line names a CSV line number and the reason.
              2. Usual reasons: no auto-verified attribute (email_verified or phone_number_verified) set to true, values that do not match the pool's schema, or an internal error.
              3. Correct those lines, put them in a new CSV file with the header from "aws cognito-idp get-csv-header --user-pool-id {{ $labels.user_pool_id }}", and run a new import job for them.
            |||,
          },
        },
        {
          alert: "CognitoUserImportJobUsersSkipped",
          expr: |||
            (
              max by (user_pool_id, job_id) (
                last_over_time(cognito_user_import_job_users{%(cognitoImportSelector)s, outcome="skipped"}[15m])
              ) > 0
            )
            * on (user_pool_id, job_id) group_left (job_name)
              max by (user_pool_id, job_id, job_name) (
                last_over_time(cognito_user_import_job_info{%(cognitoImportSelector)s}[15m])
              )
          ||| % $._config,
          'for': "0m",
          labels: { severity: "info" },
          annotations: {
            summary: "A user import job skipped some of its users.",
            description: "Import job {{ $labels.job_name }} ({{ $labels.job_id }}) in user pool {{ $labels.user_pool_id }} skipped {{ $value }} of the users in its CSV file. Cognito skips a user that already exists in the pool; the existing user is left unchanged.",
            runbook: |||-
              1. Open the job's CloudWatch Logs: log group /aws/cognito/userpools/{{ $labels.user_pool_id }}/<pool name>, stream {{ $labels.job_id }}/{{ $labels.job_name }}. Each [SKIPPED] line names a CSV line number.
              2. If the import was meant to create new users only, this is expected: silence the alert for the job.
              3. If the existing users had to be replaced, update them (for example with admin-update-user-attributes) or delete them and import those lines again.
            |||,
          },
        },
        {
          alert: "CognitoUserImportJobStuck",
          expr: |||
            (
              (
                time()
                - max by (user_pool_id, job_id) (
                    last_over_time(cognito_user_import_job_started_timestamp_seconds{%(cognitoImportSelector)s}[15m])
                    or last_over_time(cognito_user_import_job_created_timestamp_seconds{%(cognitoImportSelector)s}[15m])
                  )
              ) > %(jobStuckHours)s * 3600
            )
            * on (user_pool_id, job_id) group_left (job_name)
              max by (user_pool_id, job_id, job_name) (
                last_over_time(cognito_user_import_job_info{%(cognitoImportSelector)s, status=~"Pending|InProgress"}[15m])
              )
            unless on (user_pool_id, job_id)
              cognito_user_import_job_info{%(cognitoImportSelector)s, status!~"Pending|InProgress"}
          ||| % $._config,
          'for': "0m",
          labels: { severity: "warning" },
          annotations: {
            summary: "A user import job has been running for more than %(jobStuckHours)s hours." % $._config,
            description: "Import job {{ $labels.job_name }} ({{ $labels.job_id }}) in user pool {{ $labels.user_pool_id }} is still Pending or InProgress {{ $value | humanizeDuration }} after it was started (or created, when Cognito gives no start date). Most jobs finish within minutes to a few hours; a job this old is probably stuck.",
            runbook: |||-
              1. Check its status and counts; if ImportedUsers still grows, the job is only slow:
                 aws cognito-idp describe-user-import-job --region {{ reReplaceAll "_.*$" "" $labels.user_pool_id }} --user-pool-id {{ $labels.user_pool_id }} --job-id {{ $labels.job_id }}
              2. Read the newest lines of its CloudWatch Logs: log group /aws/cognito/userpools/{{ $labels.user_pool_id }}/<pool name>, stream {{ $labels.job_id }}/{{ $labels.job_name }}.
              3. If nothing moves, stop it with aws cognito-idp stop-user-import-job (same arguments), then import the users it did not reach in a new job. Open an AWS support case if jobs keep getting stuck.
            |||,
          },
        },
        {
          alert: "CognitoUserImportJobExpiring",
          expr: |||
            (
              (
                time()
                - max by (user_pool_id, job_id) (
                    last_over_time(cognito_user_import_job_created_timestamp_seconds{%(cognitoImportSelector)s}[15m])
                  )
              ) > %(jobExpiringHours)s * 3600
            )
            * on (user_pool_id, job_id) group_left (job_name)
              max by (user_pool_id, job_id, job_name) (
                last_over_time(cognito_user_import_job_info{%(cognitoImportSelector)s, status="Created"}[15m])
              )
            unless on (user_pool_id, job_id)
              cognito_user_import_job_info{%(cognitoImportSelector)s, status!="Created"}
          ||| % $._config,
          'for': "0m",
          labels: { severity: "warning" },
          annotations: {
            summary: "A user import job is about to expire without having started.",
            description: "Import job {{ $labels.job_name }} ({{ $labels.job_id }}) in user pool {{ $labels.user_pool_id }} is still in status Created {{ $value | humanizeDuration }} after it was created. Cognito expires a job that is not started within 24 to 48 hours of its creation (status Expired), and its users are then never imported.",
            runbook: |||-
              1. Find out who created the job and whether its CSV file was uploaded to the job's pre-signed URL (the URL is valid for 15 minutes after creation).
              2. If the file is in place, start the job:
                 aws cognito-idp start-user-import-job --region {{ reReplaceAll "_.*$" "" $labels.user_pool_id }} --user-pool-id {{ $labels.user_pool_id }} --job-id {{ $labels.job_id }}
              3. If the upload was missed, create a new job, upload the file within 15 minutes and start it; leave this one to expire.
              4. If the job is no longer wanted, silence the alert until the job expires.
            |||,
          },
        },
        ],
      },
      {
        name: "cognito-import-exporter",
        rules: [
        {
          alert: "CognitoUserImportScrapeFailing",
          expr: |||
            cognito_user_import_scrape_success{%(cognitoImportSelector)s} == 0
            unless on (user_pool_id)
              increase(cognito_user_import_api_errors_total{%(cognitoImportSelector)s, error_code="OperationNotEnabled"}[15m]) > 0
          ||| % $._config,
          'for': "15m",
          labels: { severity: "warning" },
          annotations: {
            summary: "The exporter cannot collect a user pool's import jobs.",
            description: "Every collection of user pool {{ $labels.user_pool_id }} by {{ $labels.instance }} has failed for at least 15 minutes, so its import job metrics are missing and the job alerts cannot fire for it. Errors in the last 15 minutes, by code: {{ range $i, $error := printf \"sum by (error_code) (increase(cognito_user_import_api_errors_total{user_pool_id=%q}[15m])) > 0\" $labels.user_pool_id | query | sortByLabel \"error_code\" }}{{ if $i }}, {{ end }}{{ $error.Labels.error_code }} ({{ printf \"%.0f\" $error.Value }}){{ else }}none recorded{{ end }}.",
            runbook: |||-
              1. Read the exporter's log lines for pool {{ $labels.user_pool_id }}; they name the failing call and its error.
              2. NotAuthorized or NoCredentials: the exporter's credentials lack cognito-idp:ListUserImportJobs on this pool, or none were found (on EKS, check the ServiceAccount's eks.amazonaws.com/role-arn annotation and the role's trust policy).
              3. ResourceNotFound: the pool id or region in the exporter's configuration is wrong, or the pool was deleted.
              4. Timeout, ConnectionError, InternalError: check the network path to the Cognito endpoint (NAT gateway, VPC endpoint, proxy) and the AWS Health Dashboard.
              5. TooManyRequests: see CognitoUserImportApiThrottled.
              6. PaginationLoop, MaxPagesExceeded, InvalidResponse: Cognito's answers could not be paged through; raise defaults.max_jobs if the pool really holds more jobs than that, otherwise report it with the exporter's logs.
            |||,
          },
        },
        {
          alert: "CognitoUserImportApiThrottled",
          expr: |||
            sum by (user_pool_id) (
              increase(cognito_user_import_api_errors_total{%(cognitoImportSelector)s, error_code="TooManyRequests"}[15m])
            ) > 0
          ||| % $._config,
          'for': "15m",
          labels: { severity: "warning" },
          annotations: {
            summary: "Cognito is throttling the exporter's requests.",
            description: "Cognito answered {{ printf \"%.0f\" $value }} requests for user pool {{ $labels.user_pool_id }} with TooManyRequests in the last 15 minutes, and has kept doing so for at least 15 minutes. Cognito's request-rate quotas are per account and Region and are shared with every other caller there, so the exporter's requests can slow down the applications that use the same quota, and collections may fail.",
            runbook: |||-
              1. See which callers use the quota: Cognito's quota usage metrics in CloudWatch (CallCount and ThrottleCount by request category) and CloudTrail for the account and Region.
              2. Lower the exporter's request rate: scrape.requests_per_second and scrape.pool_requests_per_second in its configuration, or a longer Prometheus scrape interval; a scrape.cache_ttl lets several Prometheus servers share one collection.
              3. If the load is legitimate, request a higher quota in the Service Quotas console.
            |||,
          },
        },
        {
          alert: "CognitoUserImportExporterDown",
          expr: |||
            up{%(cognitoImportSelector)s} == 0
          ||| % $._config,
          'for': "5m",
          labels: { severity: "warning" },
          annotations: {
            summary: "Prometheus cannot scrape cognito-import-exporter.",
            description: "Every scrape of {{ $labels.instance }} (job {{ $labels.job }}) has failed for at least 5 minutes. No import job metrics are collected there, so no import job alert can fire for its user pools.",
            runbook: |||-
              1. Open the target in Prometheus' Status > Targets page for the scrape error (connection refused, timeout, HTTP status).
              2. Check that the exporter runs and answers: curl http://{{ $labels.instance }}/-/healthy; on Kubernetes, kubectl logs <pod> -c cognito-import-exporter and kubectl describe pod <pod> (restarts, OOMKilled, probe failures).
              3. Timeouts: a scrape must finish within Prometheus' scrape_timeout; the exporter answers before it, so raise scrape_timeout only together with the exporter's scrape.timeout.
              4. A configuration error stops the exporter at start: run cognito-import-exporter --config.check --config.file <file>.
            |||,
          },
        },
        {
          alert: "CognitoUserImportExporterAbsent",
          expr: |||
            absent(up{%(cognitoImportSelector)s})
          ||| % $._config,
          'for': "15m",
          labels: { severity: "warning" },
          annotations: {
            summary: "Prometheus has no cognito-import-exporter target.",
            description: "For at least 15 minutes Prometheus has had no target matching %(cognitoImportSelector)s, so no import job metrics are collected and no import job alert can fire." % $._config,
            runbook: |||-
              1. Check Prometheus' Status > Targets and Service Discovery pages for the job.
              2. Static configuration: the scrape job must match %(cognitoImportSelector)s, which the alert rules select on (the mixin's _config.cognitoImportSelector).
              3. Prometheus Operator: check that the ServiceMonitor is selected by the Prometheus resource (serviceMonitorSelector, serviceMonitorNamespaceSelector), that its selector matches the Service's labels, that the Service has endpoints (kubectl get endpoints), and that the pods are Ready.
            ||| % $._config,
          },
        },
        {
          alert: "CognitoUserImportExporterConfigReloadFailed",
          expr: |||
            cognito_user_import_config_last_reload_successful{%(cognitoImportSelector)s} == 0
          ||| % $._config,
          'for': "5m",
          labels: { severity: "warning" },
          annotations: {
            summary: "cognito-import-exporter rejected its new configuration.",
            description: "The last configuration reload of {{ $labels.instance }} failed. The exporter keeps running with its previous configuration, so changes to pools or credentials have not taken effect, and it will not start again with the file as it is now.",
            runbook: |||-
              1. Read the exporter's log: the reload error lists every problem with its place in the file.
              2. Check the file the same way: cognito-import-exporter --config.check --config.file <file>.
              3. Fix the file, then reload again (POST /-/reload or SIGHUP).
            |||,
          },
        },
        {
          alert: "CognitoUserImportExporterCertificateExpiring",
          expr: |||
            cognito_user_import_web_tls_certificate_not_after_timestamp_seconds{%(cognitoImportSelector)s} - time()
              < %(certificateExpiryDays)s * 86400
          ||| % $._config,
          'for': "15m",
          labels: { severity: "warning" },
          annotations: {
            summary: "The TLS certificate cognito-import-exporter serves expires soon.",
            description: "The TLS certificate {{ $labels.instance }} serves expires in {{ $value | humanizeDuration }}. Once it has expired, Prometheus cannot scrape it and every import job alert goes quiet.",
            runbook: |||-
              1. Renewed files are served from the next connection, without a restart: check that the files the web config names (cert_file, key_file) were renewed, e.g. kubectl describe certificate for cert-manager.
              2. Read the exporter's log: "TLS certificate files changed but cannot be loaded" names what is wrong with the renewed files (a key of another certificate, a half-written file), and the last good certificate stays in use until it is fixed.
              3. Check the served certificate: openssl s_client -connect {{ $labels.instance }} </dev/null | openssl x509 -noout -enddate
            |||,
          },
        },
        ],
      },
    ],
  },
}
