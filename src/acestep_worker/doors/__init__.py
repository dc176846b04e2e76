"""The ways in: the Runpod serverless job, the pod's HTTP API and page, the local CLI and the remote client."""
