package config

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/vigil-run/vigil/replica"
)

// ErrNoOperatorAccess means the connection may not list or add search
// attributes (e.g. a Temporal Cloud API key without admin rights). The
// attributes must then be created by an administrator.
var ErrNoOperatorAccess = errors.New("no access to the operator service")

// EnsureSearchAttributes registers Vigil's Keyword search attributes in
// namespace when they are missing, and waits until the server lists them
// (a workflow started before that is rejected). Running it again, or from
// several workers at once, is harmless.
func EnsureSearchAttributes(ctx context.Context, c client.Client, namespace string) error {
	missing, err := missingSearchAttributes(ctx, c, namespace)
	if err != nil || len(missing) == 0 {
		return err
	}
	req := &operatorservice.AddSearchAttributesRequest{
		Namespace:        namespace,
		SearchAttributes: make(map[string]enumspb.IndexedValueType, len(missing)),
	}
	for _, name := range missing {
		req.SearchAttributes[name] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
	}
	if _, err := c.OperatorService().AddSearchAttributes(ctx, req); err != nil {
		var exists *serviceerror.AlreadyExists
		if noAccess(err) {
			return fmt.Errorf("%w: cannot register search attributes %v in namespace %s; register them as Keyword with `temporal operator search-attribute create` (or tcld)", ErrNoOperatorAccess, missing, namespace)
		}
		if !errors.As(err, &exists) {
			return fmt.Errorf("cannot register search attributes %v in namespace %s: %v; register them as Keyword with `temporal operator search-attribute create`", missing, namespace, err)
		}
	}
	for {
		missing, err = missingSearchAttributes(ctx, c, namespace)
		if err != nil || len(missing) == 0 {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("search attributes %v still missing in namespace %s: %v", missing, namespace, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func missingSearchAttributes(ctx context.Context, c client.Client, namespace string) ([]string, error) {
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if noAccess(err) {
		return nil, fmt.Errorf("%w: cannot list search attributes of namespace %s: %v", ErrNoOperatorAccess, namespace, err)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot list search attributes of namespace %s: %v", namespace, err)
	}
	var missing []string
	for _, name := range replica.SearchAttributeNames {
		if _, ok := resp.GetCustomAttributes()[name]; !ok {
			missing = append(missing, name)
		}
	}
	return missing, nil
}

func noAccess(err error) bool {
	var denied *serviceerror.PermissionDenied
	var unimplemented *serviceerror.Unimplemented
	return errors.As(err, &denied) || errors.As(err, &unimplemented)
}
