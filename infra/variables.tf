variable "project_id" {
  type        = string
  description = "Google Cloud project id that hosts the governor (an existing project with billing enabled)."
}

variable "region" {
  type        = string
  default     = "europe-west1"
  description = "Region of the functions, the scheduler job and the buckets."
}

variable "name_prefix" {
  type        = string
  default     = "release-governor"
  description = "Prefix of every resource name (functions, service accounts, secrets, scheduler job)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,20}$", var.name_prefix))
    error_message = "name_prefix: 3 to 21 characters, lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "state_bucket_name" {
  type        = string
  default     = ""
  description = "Name of the bucket that holds the governor's state; empty: <project_id>-<name_prefix>-state."
}

variable "retention_days" {
  type        = number
  default     = 7
  description = "Days after their last change that delivery claims (deliveries/) and deploy run records (runs/) are deleted. GitHub redelivers for 3 days; at least 4."

  validation {
    condition     = var.retention_days >= 4
    error_message = "retention_days must be at least 4: a claim must outlive every redelivery of its delivery."
  }
}

variable "audit_retention_days" {
  type        = number
  default     = 400
  description = "Days after their last change that decision records (decisions/, the evaluations behind each commit status) are deleted."

  validation {
    condition     = var.audit_retention_days >= var.retention_days
    error_message = "audit_retention_days must be at least retention_days."
  }
}

variable "source_zip" {
  type        = string
  default     = "../dist/function-source.zip"
  description = "The function source written by `make package` (relative to infra/)."
}

variable "github_app_id" {
  type        = string
  default     = ""
  description = "The GitHub App's numeric id. Empty in phase 1 (no functions yet); set it in phase 2, after the App exists and the secret versions are added."

  validation {
    condition     = var.github_app_id == "" || can(regex("^[0-9]+$", var.github_app_id))
    error_message = "github_app_id is the App's numeric id (App settings, About), or empty in phase 1."
  }
}

variable "github_app_slug" {
  type        = string
  default     = ""
  description = "The App's slug (https://github.com/apps/<slug>); empty: looked up from GitHub once per instance."
}

variable "github_api_url" {
  type        = string
  default     = "https://api.github.com"
  description = "GitHub's REST API root; GitHub Enterprise Server: https://HOST/api/v3."
}

variable "governor_mode" {
  type        = string
  default     = "enforce"
  description = "enforce (dispatch and answer protection requests) or shadow (decide and report, never dispatch)."

  validation {
    condition     = contains(["enforce", "shadow"], var.governor_mode)
    error_message = "governor_mode is enforce or shadow."
  }
}

variable "reconcile_timeout_seconds" {
  type        = number
  default     = 300
  description = "Time budget of one reconcile run: the function's timeout; the scheduler's attempt deadline is this plus 30 s."

  validation {
    condition     = var.reconcile_timeout_seconds >= 60 && var.reconcile_timeout_seconds <= 1770
    error_message = "reconcile_timeout_seconds: 60 to 1770 (Cloud Scheduler allows an HTTP attempt deadline of at most 1800 s)."
  }
}

variable "max_instances" {
  type        = number
  default     = 10
  description = "Upper bound of instances per function (every instance is safe to run concurrently; this bounds cost)."
}
