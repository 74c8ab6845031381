package host

import (
	"github.com/tetratelabs/wazero/api"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
)

// The bodies of the storage service (ABI.md section 5, storage_*): an
// extension's private key-value storage, on the broker's ExtensionStore.
// The namespace is always the calling extension's own id (its manifest
// id, the folder name), never a guest argument, so no extension can reach
// another's keys; a reload of the same id finds its keys again.

// storageKey reads a key argument at stack[0:2]: 1 to abi.MaxStorageKey
// bytes.
func storageKey(mod api.Module, stack []uint64) (string, int32) {
	if uint32(stack[1]) == 0 {
		return "", abi.StatusInvalidArgument
	}
	return strArg(mod, uint32(stack[0]), uint32(stack[1]), abi.MaxStorageKey)
}

func hfStorageGet(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32 {
	key, st := storageKey(mod, stack)
	if st != abi.StatusOK {
		return st
	}
	v, ok, err := svc.StorageGet(in.ext.ID(), key)
	if err != nil {
		return serviceStatus(in, abi.FuncStorageGet, err)
	}
	if !ok {
		return abi.StatusNotFound
	}
	return result(in, mod, uint32(stack[2]), uint32(stack[3]), v)
}

func hfStoragePut(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32 {
	key, st := storageKey(mod, stack)
	if st != abi.StatusOK {
		return st
	}
	v, st := arg(mod, uint32(stack[2]), uint32(stack[3]), abi.MaxStorageValue)
	if st != abi.StatusOK {
		return st
	}
	return serviceStatus(in, abi.FuncStoragePut, svc.StoragePut(in.ext.ID(), key, v))
}

func hfStorageRemove(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32 {
	key, st := storageKey(mod, stack)
	if st != abi.StatusOK {
		return st
	}
	return serviceStatus(in, abi.FuncStorageRemove, svc.StorageDelete(in.ext.ID(), key))
}

func hfStorageList(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32 {
	prefix, st := strArg(mod, uint32(stack[0]), uint32(stack[1]), abi.MaxStorageKey)
	if st != abi.StatusOK {
		return st
	}
	after, st := strArg(mod, uint32(stack[2]), uint32(stack[3]), abi.MaxStorageKey)
	if st != abi.StatusOK {
		return st
	}
	limit := uint32(stack[4])
	if limit == 0 || limit > abi.MaxStorageList {
		return abi.StatusInvalidArgument
	}
	keys, more, err := svc.StorageKeys(in.ext.ID(), prefix, after, int(limit))
	if err != nil {
		return serviceStatus(in, abi.FuncStorageList, err)
	}
	n := 4 + 1
	for _, k := range keys {
		n += 4 + len(k)
	}
	var w abi.Writer
	w.Reset(make([]byte, 0, n))
	w.U32(uint32(len(keys)))
	for _, k := range keys {
		w.Str(k)
	}
	w.U8(b2u8(more))
	return result(in, mod, uint32(stack[5]), uint32(stack[6]), w.Fields())
}
