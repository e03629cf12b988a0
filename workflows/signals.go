package workflows

import "go.temporal.io/sdk/workflow"

// receiveSignal takes the next signal payload of c into v without blocking,
// for a selector's callback. A payload that cannot be decoded is logged (by
// the SDK, as a corrupted signal) and skipped, and false is returned: the
// loop goes on. Receive would instead drop it and then block the callback,
// and with it the whole loop, until the next good payload, which for a
// healthy replica may never come.
func receiveSignal(c workflow.ReceiveChannel, v any) bool { return c.ReceiveAsync(v) }
