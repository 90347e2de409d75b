using System;
using System.Collections.Generic;
using System.IO;
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Threading;

namespace Llama.Compiled;

/// <summary>
/// The weights of one model, memory-mapped. F32 tensors are views into the mapping (nothing is
/// copied); F16 and BF16 tensors are converted to F32 once, on first request, into memory this object
/// owns. Every tensor is checked against the shape the compiled model expects, and
/// <see cref="ThrowIfUnusedTensors"/> reports tensors the model never asked for, so a wrong file fails
/// with a <see cref="ModelFormatException"/> instead of producing garbage.
/// </summary>
/// <remarks>
/// Call <c>Get*</c> from one thread while loading; afterwards the returned tensors may be read by any
/// number of threads. Disposing releases every view: tensors must not be read after that. If the
/// object is never disposed the mapping and converted tensors stay alive until the process exits.
/// </remarks>
public sealed unsafe class ModelWeights : IDisposable
{
    /// <summary>Alignment of converted tensors: one cache line, also the widest vector (AVX-512).</summary>
    private const nuint ConvertedAlignment = 64;

    private readonly MappedFile[] _files;
    private readonly Dictionary<string, Entry> _tensors;
    private readonly string _source;
    private readonly Lock _lock = new();
    private bool _disposed;

    private ModelWeights(string path, string source, RopeLayout ropeLayout, MappedFile[] files, IEnumerable<TensorInfo> tensors)
    {
        Path = path;
        _source = source;
        RopeLayout = ropeLayout;
        _files = files;
        _tensors = new Dictionary<string, Entry>(StringComparer.Ordinal);
        foreach (TensorInfo tensor in tensors)
            _tensors.Add(tensor.Name, new Entry(tensor));
    }

    /// <summary>The folder or file the weights were opened from (full path).</summary>
    public string Path { get; }

    /// <summary>How the q/k projections of this file expect RoPE to pair elements.</summary>
    public RopeLayout RopeLayout { get; }

    /// <summary>
    /// Opens the weights at <paramref name="path"/>: a folder holding <c>model.safetensors</c> or a
    /// sharded <c>model.safetensors.index.json</c>, a <c>*.safetensors</c> file, or such an index file.
    /// The headers are validated completely here; tensor data is read on request.
    /// </summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="ModelFormatException">No weights in the folder, or a file is truncated or corrupted.</exception>
    public static ModelWeights Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string fullPath = System.IO.Path.GetFullPath(path);

        if (Directory.Exists(fullPath))
        {
            string single = System.IO.Path.Combine(fullPath, "model.safetensors");
            if (File.Exists(single))
                return OpenSafetensors(fullPath, single);
            string index = System.IO.Path.Combine(fullPath, "model.safetensors.index.json");
            if (File.Exists(index))
                return OpenSharded(fullPath, index);
            throw new ModelFormatException($"no weights found in folder {fullPath}: expected model.safetensors or model.safetensors.index.json");
        }

        if (File.Exists(fullPath))
        {
            if (fullPath.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
                return OpenSafetensors(fullPath, fullPath);
            if (fullPath.EndsWith(".safetensors.index.json", StringComparison.OrdinalIgnoreCase))
                return OpenSharded(fullPath, fullPath);
            throw new ModelFormatException($"unsupported weights file {fullPath}: expected a folder, a .safetensors file or a model.safetensors.index.json");
        }

        // A path with an extension was meant as a file, anything else as a folder.
        if (System.IO.Path.HasExtension(fullPath))
            throw new FileNotFoundException($"weights file not found: {fullPath}", fullPath);
        throw new DirectoryNotFoundException($"weights folder not found: {fullPath}");
    }

    private static ModelWeights OpenSafetensors(string path, string file)
    {
        MappedFile mapped = MappedFile.Open(file);
        try
        {
            return new ModelWeights(path, file, RopeLayout.RotateHalf, [mapped], SafetensorsFormat.ReadTensors(mapped));
        }
        catch
        {
            mapped.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Opens every shard the index names, once each. The index and the shards must agree exactly:
    /// a tensor missing from its shard, or a shard tensor the index does not map to that shard,
    /// means the download is incomplete or mixed up.
    /// </summary>
    private static ModelWeights OpenSharded(string path, string indexPath)
    {
        List<KeyValuePair<string, string>> weightMap = SafetensorsFormat.ReadIndex(indexPath);
        var shardOf = new Dictionary<string, string>(StringComparer.Ordinal);
        var shards = new List<string>();
        foreach ((string name, string shard) in weightMap)
        {
            shardOf.Add(name, shard);
            if (!shards.Contains(shard))
                shards.Add(shard);
        }

        string folder = System.IO.Path.GetDirectoryName(indexPath)!;
        var files = new List<MappedFile>();
        var tensors = new List<TensorInfo>();
        try
        {
            foreach (string shard in shards)
            {
                string shardPath = System.IO.Path.Combine(folder, shard);
                if (!File.Exists(shardPath))
                    throw new ModelFormatException($"{indexPath}: shard {shard} does not exist in {folder}");
                MappedFile file = MappedFile.Open(shardPath);
                files.Add(file);
                var inShard = new HashSet<string>(StringComparer.Ordinal);
                foreach (TensorInfo tensor in SafetensorsFormat.ReadTensors(file))
                {
                    if (!shardOf.TryGetValue(tensor.Name, out string? mapped) || mapped != shard)
                        throw new ModelFormatException($"tensor {tensor.Name} is stored in {shardPath} but the index {indexPath} does not map it there");
                    inShard.Add(tensor.Name);
                    tensors.Add(tensor);
                }
                foreach ((string name, string mappedShard) in weightMap)
                {
                    if (mappedShard == shard && !inShard.Contains(name))
                        throw new ModelFormatException($"tensor {name} not found in {shardPath} (the index {indexPath} maps it there)");
                }
            }
            return new ModelWeights(path, indexPath, RopeLayout.RotateHalf, files.ToArray(), tensors);
        }
        catch
        {
            foreach (MappedFile file in files)
                file.Dispose();
            throw;
        }
    }

    /// <summary>True if the weights hold a tensor named <paramref name="name"/>.</summary>
    public bool Contains(string name)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _tensors.ContainsKey(name);
        }
    }

    /// <summary>
    /// Returns the matrix <paramref name="name"/>, which must have shape [<paramref name="rows"/>, <paramref name="cols"/>]
    /// (row-major, [out][in] for a projection), as F32.
    /// </summary>
    /// <exception cref="ModelFormatException">The tensor is missing, has another shape, or an unsupported dtype.</exception>
    public WeightTensor GetMatrix(string name, int rows, int cols)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        return Get(name, [rows, cols]);
    }

    /// <summary>Returns the vector <paramref name="name"/>, which must have shape [<paramref name="length"/>], as F32.</summary>
    /// <exception cref="ModelFormatException">The tensor is missing, has another shape, or an unsupported dtype.</exception>
    public WeightTensor GetVector(string name, int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        return Get(name, [length]);
    }

    /// <summary>
    /// Counts <paramref name="name"/> as used without reading it, for a stored tensor the model
    /// deliberately ignores (e.g. <c>lm_head.weight</c> in a model with tied embeddings). Does nothing
    /// if there is no such tensor.
    /// </summary>
    public void MarkUsed(string name)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_tensors.TryGetValue(name, out Entry? entry))
                entry.Used = true;
        }
    }

    /// <summary>
    /// Throws if the file holds tensors that were neither requested nor marked used: the file belongs
    /// to another architecture or configuration than the compiled model.
    /// </summary>
    /// <exception cref="ModelFormatException">Lists the unused tensors.</exception>
    public void ThrowIfUnusedTensors()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var unused = new List<string>();
            foreach (Entry entry in _tensors.Values)
            {
                if (!entry.Used)
                    unused.Add(entry.Tensor.Name);
            }
            if (unused.Count == 0)
                return;
            unused.Sort(StringComparer.Ordinal);
            // A wrong model can have hundreds of unknown tensors; the first few are enough to see why.
            const int MaxListed = 20;
            string list = string.Join(", ", unused.GetRange(0, Math.Min(unused.Count, MaxListed)));
            if (unused.Count > MaxListed)
                list += $" and {unused.Count - MaxListed} more";
            throw new ModelFormatException($"unknown tensor(s) {list} in {_source}: the compiled model does not use them; do the weights match its config.json?");
        }
    }

    /// <summary>Unmaps the files and frees converted tensors. Every <see cref="WeightTensor"/> becomes invalid.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
                return;
            _disposed = true;
            foreach (Entry entry in _tensors.Values)
            {
                if (entry.Converted is not null)
                {
                    NativeMemory.AlignedFree(entry.Converted);
                    entry.Converted = null;
                }
            }
            foreach (MappedFile file in _files)
                file.Dispose();
        }
    }

    private WeightTensor Get(string name, ReadOnlySpan<long> expectedShape)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_tensors.TryGetValue(name, out Entry? entry))
                throw new ModelFormatException($"tensor {name} not found in {_source}");

            TensorInfo tensor = entry.Tensor;
            if (!expectedShape.SequenceEqual(tensor.Shape))
                throw new ModelFormatException($"tensor {name} in {tensor.File.Path}: expected shape {SafetensorsFormat.FormatShape(expectedShape)}, file has {SafetensorsFormat.FormatShape(tensor.Shape)}");

            // The expected dimensions are ints, so their product fits in a long.
            long count = 1;
            foreach (long dim in expectedShape)
                count *= dim;
            if (count > int.MaxValue)
                throw new ModelFormatException($"tensor {name} in {tensor.File.Path} has {count} elements; at most {int.MaxValue} are supported");

            float* data = tensor.DType switch
            {
                "F32" => (float*)(tensor.File.Pointer + tensor.Offset),
                "F16" or "BF16" => ConvertOnce(entry, (int)count),
                _ => throw new ModelFormatException($"tensor {name} in {tensor.File.Path} has dtype {tensor.DType}; supported: F32, F16, BF16"),
            };
            entry.Used = true;
            return new WeightTensor(name, data, (int)count);
        }
    }

    /// <summary>
    /// Converts an F16 or BF16 tensor to F32 in new 64-byte-aligned native memory, on its first request
    /// only. The size was checked against the file when the header was read, so the allocation is at
    /// most twice the stored bytes.
    /// </summary>
    private static float* ConvertOnce(Entry entry, int count)
    {
        if (entry.Converted is not null)
            return entry.Converted;
        TensorInfo tensor = entry.Tensor;
        float* data = (float*)NativeMemory.AlignedAlloc((nuint)count * sizeof(float), ConvertedAlignment);
        byte* source = tensor.File.Pointer + tensor.Offset;
        if (tensor.DType == "F16")
            TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(source, count), new Span<float>(data, count));
        else
            ConvertBFloat16((ushort*)source, (uint*)data, count);
        entry.Converted = data;
        return data;
    }

    /// <summary>BF16 is the upper half of an F32: widen each 16-bit value and shift it into the high bits.</summary>
    private static void ConvertBFloat16(ushort* source, uint* destination, int count)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            for (; i <= count - Vector<ushort>.Count; i += Vector<ushort>.Count)
            {
                Vector.Widen(Vector.Load(source + i), out Vector<uint> low, out Vector<uint> high);
                Vector.Store(low << 16, destination + i);
                Vector.Store(high << 16, destination + i + Vector<uint>.Count);
            }
        }
        for (; i < count; i++)
            destination[i] = (uint)source[i] << 16;
    }

    /// <summary>A tensor plus what loading has done with it.</summary>
    private sealed class Entry(TensorInfo tensor)
    {
        public TensorInfo Tensor { get; } = tensor;

        /// <summary>Set once the model requested the tensor or marked it used.</summary>
        public bool Used { get; set; }

        /// <summary>The F32 copy of an F16/BF16 tensor, owned by the weights; null until first requested.</summary>
        public float* Converted { get; set; }
    }
}
