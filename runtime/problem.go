package runtime

// Problem is one part of a spec a node cannot run as written: the field, as
// the deployment file names it (image, ports[0].host, volumes[1].source,
// env.TOKEN), and in one line what is wrong and the fix. The preflight of a
// rollout reports them before anything is stopped; Create and Start fail
// with them (wrapped in ErrInvalidSpec or ErrImageNotFound).
type Problem struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

func (p *Problem) Error() string { return p.Field + ": " + p.Reason }
