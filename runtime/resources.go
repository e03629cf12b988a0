package runtime

import "time"

// Resources are a container's cgroup limits; a zero field is no limit.
type Resources struct {
	// MemoryBytes is the memory limit; past it the kernel's OOM killer
	// kills the container (reason OOMKilled).
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
	// CPUs is the CPU quota in cores (0.5 = half a core), as a CFS quota
	// over a 100 ms period.
	CPUs float64 `json:"cpus,omitempty"`
	// Pids bounds the number of processes and threads.
	Pids int64 `json:"pids,omitempty"`
}

// CPUPeriod is the CFS period the CPU quota is expressed over (microseconds).
const CPUPeriod = 100_000

// CPUQuota is the CFS quota for the CPUs limit, over CPUPeriod (0 if none).
func (r Resources) CPUQuota() int64 { return int64(r.CPUs * CPUPeriod) }

// Health holds a container's probes; nil ones are not run.
type Health struct {
	// Liveness failing FailureThreshold times in a row stops the container
	// (reason Unhealthy).
	Liveness *Probe `json:"liveness,omitempty"`
	// Startup must succeed once before liveness is probed.
	Startup *Probe `json:"startup,omitempty"`
	// StopGrace is the time between SIGTERM and SIGKILL when an unhealthy
	// container is stopped (the service's stop_grace).
	StopGrace time.Duration `json:"stop_grace,omitempty"`
}

// Probe checks a container: exactly one of Exec, HTTP and TCP is set.
type Probe struct {
	// Exec runs a command in the container; exit 0 is success.
	Exec []string `json:"exec,omitempty"`
	// HTTP GETs a path on a port of the container; 2xx and 3xx are success.
	HTTP *HTTPProbe `json:"http,omitempty"`
	// TCP connects to a port of the container.
	TCP *TCPProbe `json:"tcp,omitempty"`

	Period           time.Duration `json:"period"`
	Timeout          time.Duration `json:"timeout"`
	FailureThreshold int           `json:"failure_threshold"`
	InitialDelay     time.Duration `json:"initial_delay,omitempty"`
}

// HTTPProbe is an HTTP GET of Path on Port.
type HTTPProbe struct {
	Port int    `json:"port"`
	Path string `json:"path"`
}

// TCPProbe is a TCP connect to Port.
type TCPProbe struct {
	Port int `json:"port"`
}

// Probe defaults, as in Kubernetes.
const (
	DefaultProbePeriod           = 10 * time.Second
	DefaultProbeTimeout          = time.Second
	DefaultProbeFailureThreshold = 3
)

// HealthStatus is what the probes last said about a container.
type HealthStatus string

const (
	HealthStarting  HealthStatus = "starting"
	HealthHealthy   HealthStatus = "healthy"
	HealthUnhealthy HealthStatus = "unhealthy"
)
