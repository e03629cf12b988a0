package replica

// DefaultTaskQueue is the workflow task queue; replica workflows can run on any worker.
const DefaultTaskQueue = "vigil"

// Names of the Keyword search attributes every replica workflow keeps up to
// date, so that the CLI and the Web UI can find replicas by them.
const (
	SearchAttrState      = "VigilState"
	SearchAttrService    = "VigilService"
	SearchAttrDeployment = "VigilDeployment"
)

// SearchAttributeNames are the names a worker registers when they are missing.
var SearchAttributeNames = []string{SearchAttrState, SearchAttrService, SearchAttrDeployment}
