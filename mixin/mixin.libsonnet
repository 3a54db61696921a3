// The monitoring mixin of cognito-import-exporter: alerts and a Grafana dashboard.
//
//   local cognitoImport = (import 'mixin.libsonnet') + { _config+:: { cognitoImportSelector: '...' } };
//   cognitoImport.prometheusAlerts   // a Prometheus rule file's content (groups)
//   cognitoImport.grafanaDashboards  // file name -> dashboard
(import 'config.libsonnet') +
(import 'alerts/alerts.libsonnet') +
(import 'dashboards/dashboards.libsonnet') +
{
  prometheusRules+:: { groups+: [] },
}
