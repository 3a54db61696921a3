"""The demo world and the simulated Cognito it runs against: the job lifecycle, the model, the
wire format, the service with its faults, the HTTP server. Production code never imports it."""
