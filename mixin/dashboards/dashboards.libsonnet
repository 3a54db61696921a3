// The Grafana dashboard. The panels about jobs, users and the exporter's health are kept as
// data in panels.json; the quota rows, the table of pools not reporting and the data age per
// pool (its threshold is the stale-data alert's) are built here.
// Every query selects `job=~"$job", instance=~"$instance"`; the job variable lists the jobs
// that _config.cognitoImportSelector selects.
local datasource = { type: 'prometheus', uid: '${datasource}' };
local scope = 'job=~"$job", instance=~"$instance"';

local target(refId, expr, legend='__auto', instant=false, format='time_series') = {
  datasource: datasource,
  editorMode: 'code',
  expr: expr,
  legendFormat: legend,
  refId: refId,
  instant: instant,
  range: !instant,
  format: format,
};

local thresholds = { mode: 'absolute', steps: [{ color: 'green', value: null }] };

local timeseries(id, title, description, unit, gridPos, targets) = {
  type: 'timeseries',
  title: title,
  description: description,
  datasource: datasource,
  id: id,
  gridPos: gridPos,
  targets: targets,
  fieldConfig: {
    defaults: {
      unit: unit,
      min: 0,
      color: { mode: 'palette-classic' },
      custom: {
        drawStyle: 'line',
        lineInterpolation: 'stepAfter',
        lineWidth: 1,
        fillOpacity: 0,
        showPoints: 'never',
        spanNulls: false,
        axisSoftMin: 0,
        stacking: { mode: 'none', group: 'A' },
      },
      thresholds: thresholds,
      mappings: [],
    },
    overrides: [],
  },
  options: {
    legend: { displayMode: 'table', placement: 'right', showLegend: true, calcs: ['lastNotNull', 'max'] },
    tooltip: { mode: 'multi', sort: 'desc' },
  },
};

// No `current`: Grafana picks the first option (All) on load. A null allValue leaves the key out,
// so All stands for every option's value joined, as Grafana's schema has no null there.
local variable(name, label, query, regex='', includeAll=true, allValue='.+', hide=0) = {
  name: name,
  label: label,
  type: 'query',
  datasource: datasource,
  query: { qryType: 3, query: query, refId: 'PrometheusVariableQueryEditor-VariableQuery' },
  regex: regex,
  hide: hide,
  includeAll: includeAll,
  [if allValue != null then 'allValue']: allValue,
  multi: true,
  options: [],
  refresh: 2,
  sort: 1,
  skipUrlSync: false,
};

// One row per account and region the exporter spends a budget in ($quota_scope repeats it).
local quotaRow(y) = [
  {
    type: 'row',
    title: 'Request quota: $quota_scope',
    collapsed: false,
    id: 30,
    gridPos: { h: 1, w: 24, x: 0, y: y },
    panels: [],
    repeat: 'quota_scope',
  },
  timeseries(
    31,
    'Quota, budget and requests sent',
    'For one account and region: the rate Cognito enforces for ListUserImportJobs and '
    + 'DescribeUserImportJob (the UserPoolResourceRead category, GetProvisionedLimit), shared '
    + "with the account's own applications; the budget the exporter allows itself "
    + '(scrape.quota_share of the quota, or scrape.requests_per_second); and the requests it '
    + 'really sent, retries included. Sent stays under the budget; a budget at the quota '
    + "leaves nothing to the account's applications.",
    'reqps',
    { h: 8, w: 16, x: 0, y: y + 1 },
    [
      target('A', 'max by (account_id, region) (cognito_user_import_api_quota_requests_per_second{%s, $quota_scope})' % scope, 'quota'),
      target('B', 'max by (account_id, region) (cognito_user_import_api_budget_requests_per_second{%s, $quota_scope})' % scope, 'budget'),
      target('C', 'sum by (account_id, region) (rate(cognito_user_import_api_account_requests_total{%s, $quota_scope}[$__rate_interval]))' % scope, 'sent'),
    ],
  ),
  timeseries(
    32,
    'Throttled requests',
    'Requests for import jobs in this account and region that Cognito answered with '
    + 'TooManyRequests. Any at all means the quota is spent: by the exporter (lower '
    + "scrape.quota_share) or by the account's applications.",
    'reqps',
    { h: 8, w: 8, x: 16, y: y + 1 },
    [
      target('A', 'sum by (account_id, region) (rate(cognito_user_import_api_account_throttles_total{%s, $quota_scope}[$__rate_interval]))' % scope, 'throttled'),
    ],
  ),
  timeseries(
    33,
    'Refresh behind',
    'How far the most overdue pool of this account and region is past scrape.max_staleness. '
    + 'Above 0, the budget cannot refresh every pool within max_staleness: the oldest go '
    + 'first, and the log said so once. Raise the budget or max_staleness, or spread the '
    + 'pools over accounts.',
    's',
    { h: 8, w: 12, x: 0, y: y + 9 },
    [
      target('A', 'max by (account_id, region) (cognito_user_import_refresh_behind_seconds{%s, $quota_scope})' % scope, 'behind'),
    ],
  ),
  timeseries(
    34,
    'Full re-read interval in force',
    'How often every pool of this account and region is read in full: '
    + 'scrape.full_resync_interval, or longer when what keeping every pool fresh leaves of the '
    + 'budget cannot afford it (the log said so once).',
    's',
    { h: 8, w: 12, x: 12, y: y + 9 },
    [
      target('A', 'max by (account_id, region) (cognito_user_import_full_resync_interval_seconds{%s, $quota_scope})' % scope, 'full re-read interval'),
    ],
  ),
];

// The age of each pool's values, with the stale-data alert's threshold drawn in.
local dataAge(y, staleSeconds) = timeseries(
  25,
  'Data age per pool',
  'Time since each pool was last collected successfully: every value of the pool is as of '
  + 'then. Pools with an active job are collected at every scrape; in an account and region '
  + 'too large for every pool at every scrape, the others are refreshed in the background, '
  + 'within scrape.max_staleness. The dashed line is the age at which '
  + 'CognitoUserImportDataStale fires. A pool never collected has no line.',
  's',
  { h: 8, w: 24, x: 0, y: y },
  [
    target(
      'A',
      'time() - max by (user_pool_id) (cognito_user_import_scrape_last_success_timestamp_seconds{%s, user_pool_id=~"$pool"})' % scope,
      '{{user_pool_id}}',
    ),
  ],
) + {
  fieldConfig+: {
    defaults+: {
      thresholds: { mode: 'absolute', steps: [{ color: 'green', value: null }, { color: 'red', value: staleSeconds }] },
      custom+: { thresholdsStyle: { mode: 'dashed' } },
    },
  },
};

local notReporting(y) = {
  type: 'table',
  title: 'Pools not reporting',
  description: 'Pools whose last collection failed, with the error codes counted for them '
               + 'in the dashboard time range (ResourceNotFound: wrong id or region or a '
               + 'deleted pool; NotAuthorized or AccessDenied: IAM; TooManyRequests: quota; '
               + 'OperationNotEnabled: a replica region; Timeout: the scrape ran out of time). '
               + 'Empty when every pool reports.',
  datasource: datasource,
  id: 24,
  gridPos: { h: 6, w: 24, x: 0, y: y },
  targets: [
    target(
      'A',
      |||
        max by (user_pool_id, error_code) (
          increase(cognito_user_import_api_errors_total{%(scope)s, user_pool_id=~"$pool"}[$__range]) > 0
        )
        and on (user_pool_id)
          (min by (user_pool_id) (cognito_user_import_scrape_success{%(scope)s, user_pool_id=~"$pool"}) == 0)
      ||| % { scope: scope },
      instant=true,
      format='table',
    ),
  ],
  fieldConfig: {
    defaults: { unit: 'short', decimals: 0, thresholds: thresholds, mappings: [] },
    overrides: [],
  },
  options: { showHeader: true, cellHeight: 'sm', sortBy: [{ displayName: 'Pool', desc: false }] },
  transformations: [
    {
      id: 'organize',
      options: {
        excludeByName: { Time: true },
        indexByName: { user_pool_id: 0, error_code: 1, Value: 2 },
        renameByName: { user_pool_id: 'Pool', error_code: 'Error code', Value: 'Errors in range' },
      },
    },
  ],
};

local usersByReason(y) = timeseries(
  26,
  'Users failed and skipped, by reason',
  'From the CloudWatch logs of finished jobs of pools with reasons: true: users failed or '
  + "skipped per interval, by the reason the job's log gives (already_exists, "
  + 'no_verified_attribute, schema_mismatch, internal_error, other). A job is counted when '
  + 'its log has been read, a few scrapes after it finished. Empty when no pool reads reasons.',
  'short',
  { h: 8, w: 24, x: 0, y: y },
  [
    target(
      'A',
      'sum by (outcome, reason) (increase(cognito_user_import_reason_users_total{%s, user_pool_id=~"$pool"}[$__rate_interval]))' % scope,
      '{{outcome}}: {{reason}}',
    ),
  ],
);

local panels = import 'panels.json';
local bottom = std.foldl(function(lowest, p) std.max(lowest, p.gridPos.y + p.gridPos.h), panels, 0);

{
  grafanaDashboards+:: {
    'cognito-import-jobs.json': {
      id: null,
      uid: $._config.dashboardUid,
      title: $._config.dashboardTitle,
      description: 'Import jobs, imported users, the request quota and exporter health from '
                   + 'cognito-import-exporter.',
      tags: $._config.dashboardTags,
      timezone: '',
      editable: true,
      graphTooltip: 1,
      fiscalYearStartMonth: 0,
      liveNow: false,
      refresh: '1m',
      schemaVersion: 39,
      version: 1,
      weekStart: '',
      time: { from: 'now-6h', to: 'now' },
      timepicker: {},
      annotations: { list: [] },
      links: [],
      templating: {
        list: [
          {
            name: 'datasource',
            label: 'Data source',
            type: 'datasource',
            query: 'prometheus',
            hide: 0,
            includeAll: false,
            multi: false,
            options: [],
            refresh: 1,
            regex: '',
            skipUrlSync: false,
          },
          variable('job', 'Job', 'label_values(up{%s}, job)' % $._config.cognitoImportSelector),
          variable('instance', 'Instance', 'label_values(up{%s, job=~"$job"}, instance)' % $._config.cognitoImportSelector),
          variable(
            'pool',
            'User pool',
            'query_result(max by (user_pool_id, user_pool_name) (cognito_user_import_pool_info{%s}))' % scope,
            '/user_pool_id="(?<value>[^"]+)".*user_pool_name="(?<text>[^"]*)"/',
          ) + { sort: 5 },
          // value: the two label matchers of one account and region, used as they are
          variable(
            'quota_scope',
            'Account and region',
            'query_result(max by (account_id, region) (cognito_user_import_api_budget_requests_per_second{%s}))' % scope,
            '/\\{(?<value>account_id="[^"]*", ?region="[^"]*")\\}/',
            allValue=null,
            hide=2,
          ),
        ],
      },
      panels: panels + [notReporting(bottom), dataAge(bottom + 6, $._config.staleDataSeconds)]
              + [usersByReason(bottom + 14)] + quotaRow(bottom + 22),
    },
  },
}
