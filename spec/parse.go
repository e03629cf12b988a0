package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/reference"
	"gopkg.in/yaml.v3"

	"github.com/vigil-run/vigil/internal/errtext"
	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// The fields each mapping accepts, in the order they are listed in errors.
var (
	deploymentFields = []string{"version", "deployment", "services"}
	serviceFields    = append([]string{"rtype", "image", "command", "env", "scale", "errors", "stop_grace", "node", "placement", "reschedule", "health", "resources", "security", "update"}, servingFields...)
	updateFields     = []string{"max_unavailable", "min_ready"}
	placementFields  = []string{"nodes"}
	rescheduleFields = []string{"lost_after"}
	imageFields      = []string{"name", "pull_policy"}
	commandFields    = []string{"entrypoint", "args", "workdir"}
	scaleFields      = []string{"mode", "replicas"}
	errorsFields     = []string{"on_panic"}
	onPanicFields    = []string{"action", "max_restarts", "restart_window", "backoff", "poll_interval", "isolate_webhook", "rules"}
)

var (
	envPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// A node is named as its worker's --node (by default the host name);
	// it becomes the task queue "vigil-node-<node>".
	nodePattern = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$`)
)

// minPollInterval keeps a typo such as "5ms" from hammering containerd.
const minPollInterval = 100 * time.Millisecond

func fieldErr(n *yaml.Node, path, format string, args ...any) *FieldError {
	fe := &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		fe.Line = n.Line
	}
	return fe
}

func parse(data []byte) (d *Deployment, err error) {
	if len(data) > MaxFileSize {
		return nil, &FieldError{Path: "file", Msg: fmt.Sprintf("larger than %d bytes; split it into several deployments", MaxFileSize)}
	}
	// The YAML library is third-party code fed untrusted input; a panic there
	// must become an error, not crash the CLI.
	defer func() {
		if r := recover(); r != nil {
			d, err = nil, &FieldError{Path: "document", Msg: "the YAML parser failed on this input; check the file's syntax"}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FieldError{Path: "document", Msg: "empty; write a deployment with version, deployment and services"}
		}
		return nil, syntaxError(data, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, syntaxError(data, err)
		}
		return nil, &FieldError{Line: extra.Line, Path: "document", Msg: "more than one YAML document; keep one deployment per file"}
	}
	if len(doc.Content) != 1 {
		return nil, &FieldError{Path: "document", Msg: "empty; write a deployment with version, deployment and services"}
	}
	return parseDeployment(doc.Content[0])
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// syntaxError turns a YAML syntax error into a one-line FieldError.
func syntaxError(data []byte, err error) *FieldError {
	msg := err.Error()
	fe := &FieldError{Path: "document"}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		fe.Line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	if line := problemLine(data, msg); line > 0 {
		fe.Line = line
	}
	msg = errtext.OneLine(msg)
	fe.Msg = "invalid YAML (" + msg + "); fix the syntax"
	return fe
}

// maxProblemLineSearch bounds the search below; deployment files are far
// shorter, and a huge file only loses the line's precision.
const maxProblemLineSearch = 1000

// problemLine finds the line a YAML syntax error is on. yaml.v3 reports the
// line where the enclosing construct began (often the line before), not the
// line of the problem, so this parses ever longer prefixes of the file: the
// first one that fails with the same problem ends on the line that has it.
// 0 if not found.
func problemLine(data []byte, problem string) int {
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) > maxProblemLineSearch {
		return 0
	}
	n := 0
	for i, l := range lines {
		n += len(l)
		var doc yaml.Node
		err := yaml.NewDecoder(bytes.NewReader(data[:n])).Decode(&doc)
		if err == nil || errors.Is(err, io.EOF) {
			continue
		}
		if msg := yamlLine.ReplaceAllString(err.Error(), ""); strings.TrimPrefix(msg, "yaml: ") == problem {
			return i + 1
		}
	}
	return 0
}

func parseDeployment(root *yaml.Node) (*Deployment, error) {
	fields, err := mapping(root, "", deploymentFields)
	if err != nil {
		return nil, err
	}
	d := &Deployment{}
	if d.Version, err = requiredString(root, fields, "", "version"); err != nil {
		return nil, err
	}
	if d.Version != Version {
		return nil, fieldErr(fields["version"], "version", "%s is not supported; use %s", quote(d.Version), Version)
	}
	if d.Name, err = requiredString(root, fields, "", "deployment"); err != nil {
		return nil, err
	}
	if err := checkName(fields["deployment"], "deployment", d.Name); err != nil {
		return nil, err
	}
	services := fields["services"]
	if services == nil {
		return nil, fieldErr(root, "services", "missing; list at least one service")
	}
	pairs, err := entries(services, "services")
	if err != nil {
		return nil, err
	}
	if len(pairs) == 0 {
		return nil, fieldErr(services, "services", "empty; list at least one service")
	}
	if len(pairs) > MaxServices {
		return nil, fieldErr(services, "services", "%d services; use at most %d per deployment", len(pairs), MaxServices)
	}
	var claims []publishedPort
	for _, p := range pairs {
		s, err := parseService(d.Name, p)
		if err != nil {
			return nil, err
		}
		d.Services = append(d.Services, s)
		for _, c := range s.claims {
			// A placed service may run on any of its nodes: its ports are
			// claimed on each.
			for _, node := range s.Nodes() {
				c.node = node
				claims = append(claims, c)
			}
		}
	}
	if err := checkHostPorts(claims); err != nil {
		return nil, err
	}
	return d, nil
}

func parseService(deployment string, p entry) (Service, error) {
	path := join("services", p.key)
	if err := checkName(p.keyNode, path, p.key); err != nil {
		return Service{}, err
	}
	fields, err := mapping(p.value, path, serviceFields)
	if err != nil {
		return Service{}, err
	}
	s := Service{Name: p.key, RType: RTypeService, Replicas: 1, StopGrace: runtime.DefaultStopGrace}

	if n := fields["rtype"]; n != nil {
		if s.RType, err = scalar(n, path+".rtype"); err != nil {
			return Service{}, err
		}
		if s.RType != RTypeService {
			return Service{}, fieldErr(n, path+".rtype", "%s is not supported; use %s (a long-running container)", quote(s.RType), RTypeService)
		}
	}
	if s.Spec, err = parseImage(p.value, fields["image"], path); err != nil {
		return Service{}, err
	}
	if err := parseCommand(fields["command"], path+".command", &s.Spec); err != nil {
		return Service{}, err
	}
	if s.Spec.Env, err = parseEnv(fields["env"], path+".env"); err != nil {
		return Service{}, err
	}
	if s.Replicas, err = parseScale(fields["scale"], path+".scale"); err != nil {
		return Service{}, err
	}
	if err := checkIDLength(p.keyNode, path, deployment, s.Name, s.Replicas); err != nil {
		return Service{}, err
	}
	if s.Spec.Serving, s.claims, err = parseServing(fields, path, s.Replicas); err != nil {
		return Service{}, err
	}
	if s.Policy, s.IsolateWebhook, err = parseErrors(fields["errors"], path+".errors"); err != nil {
		return Service{}, err
	}
	if n := fields["stop_grace"]; n != nil {
		if s.StopGrace, err = duration(n, path+".stop_grace"); err != nil {
			return Service{}, err
		}
	}
	if n := fields["node"]; n != nil {
		if s.Node, err = scalar(n, path+".node"); err != nil {
			return Service{}, err
		}
		if !nodePattern.MatchString(s.Node) {
			return Service{}, fieldErr(n, path+".node", "%s is not a valid node name; use the --node name of a vigil-worker (letters, digits, '.', '-', '_'; at most 63)", quote(s.Node))
		}
	}
	if s.Placement, err = parsePlacement(fields["placement"], path+".placement"); err != nil {
		return Service{}, err
	}
	if fields["node"] != nil && fields["placement"] != nil {
		return Service{}, fieldErr(fields["placement"], path+".placement",
			"%s.node and %s.placement are both given; use node to pin the service to one node, or placement.nodes to let it move between nodes", path, path)
	}
	if s.LostAfter, err = parseReschedule(fields["reschedule"], path+".reschedule"); err != nil {
		return Service{}, err
	}
	if s.Spec.Health, err = parseHealth(fields["health"], path+".health"); err != nil {
		return Service{}, err
	}
	if s.Spec.Health != nil {
		s.Spec.Health.StopGrace = s.StopGrace
	}
	if s.Spec.Resources, err = parseResources(fields["resources"], path+".resources"); err != nil {
		return Service{}, err
	}
	if s.Spec.Security, err = parseSecurity(fields["security"], path+".security"); err != nil {
		return Service{}, err
	}
	if s.Update, err = parseUpdate(fields["update"], path+".update"); err != nil {
		return Service{}, err
	}
	return s, nil
}

// parsePlacement reads placement: { nodes: [a, b] }: the nodes a service's
// replicas are spread over, each a valid node name, once.
func parsePlacement(n *yaml.Node, path string) ([]string, error) {
	if n == nil {
		return nil, nil
	}
	fields, err := mapping(n, path, placementFields)
	if err != nil {
		return nil, err
	}
	nn := fields["nodes"]
	if nn == nil {
		return nil, fieldErr(n, path+".nodes", "missing; list the nodes the service may run on, e.g. [node-a, node-b]")
	}
	nodes, err := stringList(nn, path+".nodes", "[node-a, node-b]")
	if err != nil {
		return nil, err
	}
	if len(nodes) == 0 {
		return nil, fieldErr(nn, path+".nodes", "empty; list at least one node, e.g. [node-a, node-b]")
	}
	for i, node := range nodes {
		ipath := fmt.Sprintf("%s.nodes[%d]", path, i)
		if !nodePattern.MatchString(node) {
			return nil, fieldErr(nn, ipath, "%s is not a valid node name; use the --node name of a vigil-worker (letters, digits, '.', '-', '_'; at most 63)", quote(node))
		}
		if slices.Contains(nodes[:i], node) {
			return nil, fieldErr(nn, ipath, "%s is listed twice; name each node once", quote(node))
		}
	}
	return nodes, nil
}

// parseReschedule reads reschedule: { lost_after: 30s }; 0 when absent
// (replica.DefaultLostAfter applies).
func parseReschedule(n *yaml.Node, path string) (time.Duration, error) {
	if n == nil {
		return 0, nil
	}
	fields, err := mapping(n, path, rescheduleFields)
	if err != nil {
		return 0, err
	}
	ln := fields["lost_after"]
	if ln == nil {
		return 0, nil
	}
	d, err := duration(ln, path+".lost_after")
	if err != nil {
		return 0, err
	}
	if d < replica.MinLostAfter || d > time.Hour {
		return 0, fieldErr(ln, path+".lost_after", "%s is out of range; use %s to 1h (default %s)", quote(ln.Value), replica.MinLostAfter, replica.DefaultLostAfter)
	}
	return d, nil
}

// parseUpdate reads the rollout settings: update: { max_unavailable: 1, min_ready: 5s }.
func parseUpdate(n *yaml.Node, path string) (Update, error) {
	var u Update
	if n == nil {
		return u, nil
	}
	fields, err := mapping(n, path, updateFields)
	if err != nil {
		return u, err
	}
	if mn := fields["max_unavailable"]; mn != nil {
		if u.MaxUnavailable, err = integer(mn, path+".max_unavailable"); err != nil {
			return u, err
		}
		if u.MaxUnavailable < 1 || u.MaxUnavailable > MaxReplicas {
			return u, fieldErr(mn, path+".max_unavailable", "%d is out of range; use 1 (one replica replaced at a time) up to the number of replicas", u.MaxUnavailable)
		}
	}
	if rn := fields["min_ready"]; rn != nil {
		if u.MinReady, err = duration(rn, path+".min_ready"); err != nil {
			return u, err
		}
		if u.MinReady > MaxMinReady {
			return u, fieldErr(rn, path+".min_ready", "%s is too long; use at most %s", quote(rn.Value), MaxMinReady)
		}
	}
	return u, nil
}

func parseImage(service, n *yaml.Node, path string) (runtime.ContainerSpec, error) {
	path += ".image"
	var spec runtime.ContainerSpec
	if n == nil {
		return spec, fieldErr(service, path, "missing; add image: { name: docker.io/library/busybox:latest }")
	}
	if n.Kind == yaml.ScalarNode {
		return spec, fieldErr(n, path, "want a mapping; write image: { name: %s }", quote(n.Value))
	}
	fields, err := mapping(n, path, imageFields)
	if err != nil {
		return spec, err
	}
	if spec.Image, err = requiredString(n, fields, path, "name"); err != nil {
		return spec, err
	}
	if _, perr := reference.ParseNormalizedNamed(spec.Image); perr != nil || len(spec.Image) > 255 {
		return spec, fieldErr(fields["name"], path+".name", "%s is not a valid image reference; use e.g. docker.io/library/busybox:latest", quote(spec.Image))
	}
	spec.PullPolicy = runtime.PullIfNotPresent
	if pn := fields["pull_policy"]; pn != nil {
		v, err := scalar(pn, path+".pull_policy")
		if err != nil {
			return spec, err
		}
		switch pp := runtime.PullPolicy(v); pp {
		case runtime.PullAlways, runtime.PullIfNotPresent, runtime.PullNever:
			spec.PullPolicy = pp
		default:
			return spec, fieldErr(pn, path+".pull_policy", "%s is not one of always, if_not_present, never", quote(v))
		}
	}
	return spec, nil
}

func parseCommand(n *yaml.Node, path string, spec *runtime.ContainerSpec) error {
	if n == nil {
		return nil
	}
	fields, err := mapping(n, path, commandFields)
	if err != nil {
		return err
	}
	if spec.Entrypoint, err = stringList(fields["entrypoint"], path+".entrypoint", `["/bin/sh", "-c"]`); err != nil {
		return err
	}
	if spec.Args, err = stringList(fields["args"], path+".args", `["exec httpd -f -p 8080"]`); err != nil {
		return err
	}
	if wn := fields["workdir"]; wn != nil {
		if spec.WorkDir, err = scalar(wn, path+".workdir"); err != nil {
			return err
		}
		if !strings.HasPrefix(spec.WorkDir, "/") {
			return fieldErr(wn, path+".workdir", "%s is not an absolute path; start it with /", quote(spec.WorkDir))
		}
	}
	return nil
}

func parseEnv(n *yaml.Node, path string) (map[string]string, error) {
	if n == nil {
		return nil, nil
	}
	pairs, err := entries(n, path)
	if err != nil {
		return nil, err
	}
	if len(pairs) > MaxEnvVars {
		return nil, fieldErr(n, path, "%d variables; use at most %d", len(pairs), MaxEnvVars)
	}
	env := make(map[string]string, len(pairs))
	for _, p := range pairs {
		vpath := join(path, p.key)
		if !envPattern.MatchString(p.key) || len(p.key) > 256 {
			return nil, fieldErr(p.keyNode, vpath, "%s is not a valid variable name; use letters, digits and '_', not starting with a digit", quote(p.key))
		}
		if p.value == nil || isNull(p.value) {
			return nil, fieldErr(p.keyNode, vpath, `no value; write "" for an empty value`)
		}
		v, err := scalar(p.value, vpath)
		if err != nil {
			return nil, err
		}
		if ref, ok := strings.CutPrefix(v, runtime.EnvRefPrefix); ok && !envPattern.MatchString(ref) {
			return nil, fieldErr(p.value, vpath, "%s is not a valid reference; write $E:NAME with NAME a variable of the worker's environment", quote(v))
		}
		env[p.key] = v
	}
	return env, nil
}

func parseScale(n *yaml.Node, path string) (int, error) {
	if n == nil {
		return 1, nil
	}
	fields, err := mapping(n, path, scaleFields)
	if err != nil {
		return 0, err
	}
	if mn := fields["mode"]; mn != nil {
		mode, err := scalar(mn, path+".mode")
		if err != nil {
			return 0, err
		}
		if mode != ScaleFixed {
			return 0, fieldErr(mn, path+".mode", "%s is not supported; use %s", quote(mode), ScaleFixed)
		}
	}
	rn := fields["replicas"]
	if rn == nil {
		return 1, nil
	}
	replicas, err := integer(rn, path+".replicas")
	if err != nil {
		return 0, err
	}
	if replicas < 1 || replicas > MaxReplicas {
		return 0, fieldErr(rn, path+".replicas", "%d is out of range; use 1 to %d", replicas, MaxReplicas)
	}
	return replicas, nil
}

func parseErrors(n *yaml.Node, path string) (policy.Policy, string, error) {
	var p policy.Policy
	if n == nil {
		return p.WithDefaults(), "", nil
	}
	fields, err := mapping(n, path, errorsFields)
	if err != nil {
		return p, "", err
	}
	on := fields["on_panic"]
	if on == nil {
		return p.WithDefaults(), "", nil
	}
	path += ".on_panic"
	if fields, err = mapping(on, path, onPanicFields); err != nil {
		return p, "", err
	}
	nodes := make(map[string]*yaml.Node, len(fields))
	for k, v := range fields {
		nodes[k] = v
	}
	if an := fields["action"]; an != nil {
		v, err := scalar(an, path+".action")
		if err != nil {
			return p, "", err
		}
		p.Action = policy.Action(v)
		switch p.Action {
		case policy.ActionRestart, policy.ActionShutdown, policy.ActionIsolate:
		default:
			return p, "", fieldErr(an, path+".action", "%s is not one of restart, shutdown, isolate", quote(v))
		}
	}
	if mn := fields["max_restarts"]; mn != nil {
		if p.MaxRestarts, err = integer(mn, path+".max_restarts"); err != nil {
			return p, "", err
		}
		// policy.WithDefaults reads 0 as "unset", so an explicit 0 would
		// silently become the default; refuse it instead.
		if p.MaxRestarts < 1 {
			return p, "", fieldErr(mn, path+".max_restarts", "%d is out of range; use 1 or more (omit it for the default %d)", p.MaxRestarts, policy.DefaultMaxRestarts)
		}
	}
	if bn := fields["backoff"]; bn != nil && bn.Kind == yaml.MappingNode {
		if p.Exponential, err = parseExponential(bn, path+".backoff"); err != nil {
			return p, "", err
		}
		delete(fields, "backoff")
	}
	if rn := fields["rules"]; rn != nil {
		if p.Rules, err = parseRules(rn, path+".rules"); err != nil {
			return p, "", err
		}
	}
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{
		{"restart_window", &p.RestartWindow},
		{"backoff", &p.Backoff},
		{"poll_interval", &p.PollInterval},
	} {
		if dn := fields[d.name]; dn != nil {
			if *d.dst, err = duration(dn, path+"."+d.name); err != nil {
				return p, "", err
			}
		}
	}
	if p.PollInterval != 0 && p.PollInterval < minPollInterval {
		return p, "", fieldErr(fields["poll_interval"], path+".poll_interval", "%s is too short; use %s or more", p.PollInterval, minPollInterval)
	}
	p = p.WithDefaults()
	if err := p.Validate(); err != nil {
		// Validate names the field; give it its full path and line.
		var pe *policy.FieldError
		if !errors.As(err, &pe) {
			return p, "", fieldErr(on, path, "%v", err)
		}
		top, _, _ := strings.Cut(pe.Field, ".")
		top, _, _ = strings.Cut(top, "[")
		n := nodes[top]
		if n == nil {
			n = on
		}
		return p, "", fieldErr(n, path+"."+pe.Field, "%s", pe.Msg)
	}
	var webhook string
	if wn := fields["isolate_webhook"]; wn != nil {
		if webhook, err = scalar(wn, path+".isolate_webhook"); err != nil {
			return p, "", err
		}
		u, perr := url.Parse(webhook)
		if perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return p, "", fieldErr(wn, path+".isolate_webhook", "%s is not an http(s) URL; use e.g. https://hooks.example.com/vigil", quote(webhook))
		}
		if p.Action != policy.ActionIsolate {
			return p, "", fieldErr(wn, path+".isolate_webhook", "only used when action is isolate; remove it or set action: isolate")
		}
	}
	return p, webhook, nil
}

func checkName(n *yaml.Node, path, name string) error {
	if !replica.ValidName(name) {
		return fieldErr(n, path, "%s is not a valid name; %s", quote(name), replica.NameRule)
	}
	return nil
}

// checkIDLength checks that the longest containerd ID of the service,
// "<deployment>.<service>-rep-<replicas>", fits containerd's limit.
func checkIDLength(n *yaml.Node, path, deployment, service string, replicas int) error {
	id := replica.ID{Deployment: deployment, Service: service, Replica: replicas}.ContainerName()
	if len(id) > replica.MaxContainerNameLength {
		return fieldErr(n, path, "container ID %s is longer than containerd's %d characters; shorten the deployment or service name", quote(id), replica.MaxContainerNameLength)
	}
	return nil
}

// entry is one key/value pair of a mapping whose keys are names (services, env).
type entry struct {
	key     string
	keyNode *yaml.Node
	value   *yaml.Node
}

// entries returns the pairs of a mapping in file order, rejecting
// duplicates, aliases and non-string keys.
func entries(n *yaml.Node, path string) ([]entry, error) {
	if err := noAlias(n, path); err != nil {
		return nil, err
	}
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, fieldErr(n, path, "want a mapping of name: value, got %s; write name: value pairs", kindName(n))
	}
	seen := make(map[string]bool, len(n.Content)/2)
	var out []entry
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if err := noAlias(k, path); err != nil {
			return nil, err
		}
		if k.Kind != yaml.ScalarNode {
			return nil, fieldErr(k, path, "a key is a %s; keys must be plain names", kindName(k))
		}
		kpath := join(path, k.Value)
		if seen[k.Value] {
			return nil, fieldErr(k, kpath, "duplicate key; remove one of them")
		}
		seen[k.Value] = true
		if err := noAlias(v, kpath); err != nil {
			return nil, err
		}
		out = append(out, entry{key: k.Value, keyNode: k, value: v})
	}
	return out, nil
}

// mapping returns the values of a mapping with a fixed set of fields by
// name. Unknown and duplicate fields are errors; null values count as absent.
func mapping(n *yaml.Node, path string, valid []string) (map[string]*yaml.Node, error) {
	where := path
	if where == "" {
		where = "document"
	}
	pairs, err := entries(n, where)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*yaml.Node, len(pairs))
	for _, p := range pairs {
		if !contains(valid, p.key) {
			return nil, fieldErr(p.keyNode, join(path, p.key), "unknown field; valid fields are %s", strings.Join(valid, ", "))
		}
		if !isNull(p.value) {
			out[p.key] = p.value
		}
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func requiredString(parent *yaml.Node, fields map[string]*yaml.Node, path, name string) (string, error) {
	fpath := join(path, name)
	n := fields[name]
	if n == nil {
		return "", fieldErr(parent, fpath, "missing; add %s: ...", name)
	}
	v, err := scalar(n, fpath)
	if err != nil {
		return "", err
	}
	if v == "" {
		return "", fieldErr(n, fpath, "empty; give it a value")
	}
	return v, nil
}

// scalar returns a scalar node's text. Numbers and booleans are accepted as
// their text (env: { PORT: 8080 } means "8080").
func scalar(n *yaml.Node, path string) (string, error) {
	if err := noAlias(n, path); err != nil {
		return "", err
	}
	if n.Kind != yaml.ScalarNode || isNull(n) {
		return "", fieldErr(n, path, "want a single value, got %s; write one plain value (quote it if needed)", kindName(n))
	}
	if len(n.Value) > MaxStringBytes {
		return "", fieldErr(n, path, "longer than %d bytes; shorten it", MaxStringBytes)
	}
	if strings.IndexByte(n.Value, 0) >= 0 {
		return "", fieldErr(n, path, "contains a NUL character; remove it")
	}
	return n.Value, nil
}

func integer(n *yaml.Node, path string) (int, error) {
	if err := noAlias(n, path); err != nil {
		return 0, err
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		return 0, fieldErr(n, path, "want a whole number, got %s; write e.g. 2", describe(n))
	}
	var v int
	if err := n.Decode(&v); err != nil {
		return 0, fieldErr(n, path, "%s is not a whole number in range; use a small positive number", quote(n.Value))
	}
	return v, nil
}

func duration(n *yaml.Node, path string) (time.Duration, error) {
	if err := noAlias(n, path); err != nil {
		return 0, err
	}
	if n.Kind == yaml.ScalarNode && (n.ShortTag() == "!!int" || n.ShortTag() == "!!float") {
		return 0, fieldErr(n, path, "%s has no unit; write a Go duration such as %ss", quote(n.Value), n.Value)
	}
	v, err := scalar(n, path)
	if err != nil {
		return 0, err
	}
	d, perr := time.ParseDuration(v)
	if perr != nil {
		return 0, fieldErr(n, path, "%s is not a duration; use Go syntax such as 30s, 5m or 1h30m", quote(v))
	}
	if d <= 0 {
		return 0, fieldErr(n, path, "%s must be positive; use e.g. 30s", quote(v))
	}
	return d, nil
}

func stringList(n *yaml.Node, path, example string) ([]string, error) {
	if n == nil {
		return nil, nil
	}
	items, err := list(n, path, "list of strings", example)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(items))
	for i, item := range items {
		v, err := scalar(item, fmt.Sprintf("%s[%d]", path, i))
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func noAlias(n *yaml.Node, path string) error {
	if n != nil && n.Kind == yaml.AliasNode {
		return fieldErr(n, path, "YAML aliases (*name) are not supported; write the value out")
	}
	return nil
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kindName(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.AliasNode:
		return "an alias"
	case isNull(n):
		return "nothing"
	default:
		return "a single value"
	}
}

// describe names what a node is, showing the value of scalars.
func describe(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode && !isNull(n) {
		return quote(n.Value)
	}
	return kindName(n)
}
