using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading;
using Llama.Compiled.CompilerServices;

namespace Llama.Compiled;

/// <summary>
/// The weights of one model, memory-mapped, from safetensors (single or sharded), GGUF or a llama2.c
/// checkpoint; tensors are known by their Hugging Face names whatever the file format. A tensor requested
/// in the format it is stored in is a view into the mapping (nothing is copied); any other request
/// (F32 from F16/BF16/Q8_0/Q4_0, or a <see cref="WeightFormat"/> other than the stored one) is converted
/// once, on first request: for a <see cref="WeightLoading.Map"/> load into the weights' cache file, which later loads
/// map (see <see cref="WeightLoading.Map"/>), otherwise into memory this object owns. Every tensor is checked against the shape the
/// compiled model expects, and <see cref="ThrowIfUnusedTensors"/> reports tensors the model never asked for, so a wrong file fails
/// with a <see cref="ModelFormatException"/> instead of producing garbage.
/// </summary>
/// <remarks>
/// Call <c>Get*</c> from one thread while loading; afterwards the returned tensors may be read by any
/// number of threads. Disposing releases every view: tensors must not be read after that. If the
/// object is never disposed the mapping and converted tensors stay alive until the process exits.
/// </remarks>
public sealed unsafe class ModelWeights : IDisposable
{
    private readonly MappedFile[] _files;
    private readonly Dictionary<string, Entry> _tensors;
    private readonly string _source;
    private readonly Lock _lock = new();
    private readonly List<(nint Start, long Length)> _views = []; // every view handed out, in order: what Fingerprint hashes
    private ulong? _fingerprint;
    private bool _disposed;
    private WeightLoading _loading = WeightLoading.MapWithoutCache; // Open(path) inspects a file: it writes no cache
    private string? _cacheDirectory, _userCacheDirectory; // see WeightCache.CandidatePaths
    private WeightCache? _cache; // opened by the first conversion of a mapped load
    private long _ownedBytes;

    private ModelWeights(string path, string source, RopeLayout ropeLayout, MappedFile[] files, IEnumerable<TensorInfo> tensors, GgufMetadata? metadata = null)
    {
        Path = path;
        _source = source;
        RopeLayout = ropeLayout;
        Metadata = metadata;
        _files = files;
        _tensors = new Dictionary<string, Entry>(StringComparer.Ordinal);
        foreach (TensorInfo tensor in tensors)
        {
            // Readers reject duplicate names; a GGUF file can still hold a tensor under both its GGUF
            // and its Hugging Face name, which map to the same name here.
            if (!_tensors.TryAdd(tensor.Name, new Entry(tensor)))
                throw new ModelFormatException($"{source}: two tensors are named {tensor.Name} (after mapping GGUF names to Hugging Face names)");
        }
    }

    /// <summary>The folder or file the weights were opened from (full path).</summary>
    public string Path { get; }

    /// <summary>How the q/k projections of this file expect RoPE to pair elements.</summary>
    public RopeLayout RopeLayout { get; }

    /// <summary>The metadata of a GGUF file (hyperparameters, tokenizer vocabulary); null for other formats.</summary>
    public GgufMetadata? Metadata { get; }

    /// <summary>
    /// Opens the weights at <paramref name="path"/> without checking hyperparameters stored in the file;
    /// see <see cref="Open(string, LlamaModelShape)"/>.
    /// </summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="ModelFormatException">No weights in the folder, or a file is truncated or corrupted.</exception>
    public static ModelWeights Open(string path) => OpenCore(path, null);

    /// <summary>
    /// Opens the weights at <paramref name="path"/>: a folder holding <c>model.safetensors</c>, a sharded
    /// <c>model.safetensors.index.json</c>, else exactly one <c>*.gguf</c> file, else exactly one llama2.c
    /// <c>*.bin</c> checkpoint; or such a file directly (<c>.safetensors</c>, <c>.safetensors.index.json</c>,
    /// <c>.gguf</c>, <c>.bin</c>). Headers are validated completely here, and hyperparameters the file
    /// stores (GGUF metadata, the llama2.c header) are checked against <paramref name="shape"/>; tensor
    /// data is read on request. GGUF tensor names are mapped to the Hugging Face names
    /// (<c>blk.0.attn_q.weight</c> → <c>model.layers.0.self_attn.q_proj.weight</c>, ...).
    /// </summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="ModelFormatException">
    /// No weights in the folder, a file is truncated or corrupted, or a stored hyperparameter differs from
    /// <paramref name="shape"/> (the message names the key, the expected and the stored value).
    /// </exception>
    public static ModelWeights Open(string path, LlamaModelShape shape) => Open(path, shape, WeightLoading.Map);

    /// <summary>
    /// Opens the weights at <paramref name="path"/> as <see cref="Open(string, LlamaModelShape)"/> does, mapping
    /// or copying the files as <paramref name="loading"/> says.
    /// </summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <remarks>
    /// With <see cref="WeightLoading.Map"/>, tensors that must be converted are taken from (or, on the first load, written
    /// to) a cache file beside the weights, which is completed when <see cref="ThrowIfUnusedTensors"/> finds every tensor
    /// used; see <see cref="WeightLoading.Map"/>.
    /// </remarks>
    /// <exception cref="ModelFormatException">No weights in the folder, a file is truncated or corrupted, or a stored hyperparameter differs from <paramref name="shape"/>.</exception>
    /// <exception cref="OutOfMemoryException"><see cref="WeightLoading.Copy"/>: the files do not fit in memory.</exception>
    public static ModelWeights Open(string path, LlamaModelShape shape, WeightLoading loading)
    {
        ArgumentNullException.ThrowIfNull(shape);
        if (!Enum.IsDefined(loading))
            throw new ArgumentOutOfRangeException(nameof(loading), loading, "not a WeightLoading value");
        return Open(path, shape, loading, WeightCache.ConfiguredDirectory(), WeightCache.UserDirectory());
    }

    /// <summary>
    /// <see cref="Open(string, LlamaModelShape, WeightLoading)"/> with the places of the cache a mapped load converts
    /// into (see <see cref="WeightCache.CandidatePaths"/>) given instead of read from the environment.
    /// </summary>
    internal static ModelWeights Open(string path, LlamaModelShape shape, WeightLoading loading, string? cacheDirectory, string? userCacheDirectory)
    {
        ModelWeights weights = OpenCore(path, shape, loading);
        weights._loading = loading;
        weights._cacheDirectory = cacheDirectory;
        weights._userCacheDirectory = userCacheDirectory;
        return weights;
    }

    private static ModelWeights OpenCore(string path, LlamaModelShape? shape, WeightLoading loading = WeightLoading.MapWithoutCache)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string fullPath = System.IO.Path.GetFullPath(path);

        if (Directory.Exists(fullPath))
        {
            string single = System.IO.Path.Combine(fullPath, "model.safetensors");
            if (File.Exists(single))
                return OpenSafetensors(fullPath, single, loading);
            string index = System.IO.Path.Combine(fullPath, "model.safetensors.index.json");
            if (File.Exists(index))
                return OpenSharded(fullPath, index, loading);
            string? gguf = SingleFile(fullPath, ".gguf", "GGUF", static _ => true);
            if (gguf is not null)
                return OpenGguf(fullPath, gguf, shape, loading);
            string? bin = SingleFile(fullPath, ".bin", "llama2.c .bin", IsCheckpointName);
            if (bin is not null)
                return OpenLlama2c(fullPath, bin, shape, loading);
            throw new ModelFormatException($"no weights found in folder {fullPath}: expected model.safetensors, model.safetensors.index.json, one .gguf file or one llama2.c .bin checkpoint");
        }

        if (File.Exists(fullPath))
        {
            if (fullPath.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
                return OpenSafetensors(fullPath, fullPath, loading);
            if (fullPath.EndsWith(".safetensors.index.json", StringComparison.OrdinalIgnoreCase))
                return OpenSharded(fullPath, fullPath, loading);
            if (fullPath.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
                return OpenGguf(fullPath, fullPath, shape, loading);
            if (fullPath.EndsWith(".bin", StringComparison.OrdinalIgnoreCase))
                return OpenLlama2c(fullPath, fullPath, shape, loading);
            throw new ModelFormatException($"unsupported weights file {fullPath}: expected a folder, a .safetensors, .gguf or llama2.c .bin file, or a model.safetensors.index.json");
        }

        // A path with an extension was meant as a file, anything else as a folder.
        if (System.IO.Path.HasExtension(fullPath))
            throw new FileNotFoundException($"weights file not found: {fullPath}", fullPath);
        throw new DirectoryNotFoundException($"weights folder not found: {fullPath}");
    }

    /// <summary>The one file with <paramref name="extension"/> in <paramref name="folder"/>, null if none; several are ambiguous.</summary>
    private static string? SingleFile(string folder, string extension, string kind, Func<string, bool> candidate)
    {
        var found = new List<string>();
        foreach (string file in Directory.EnumerateFiles(folder))
        {
            if (file.EndsWith(extension, StringComparison.OrdinalIgnoreCase) && candidate(System.IO.Path.GetFileName(file)))
                found.Add(file);
        }
        if (found.Count <= 1)
            return found.Count == 1 ? found[0] : null;
        found.Sort(StringComparer.Ordinal);
        throw new ModelFormatException($"folder {folder} holds {found.Count} {kind} files ({string.Join(", ", found.ConvertAll(f => System.IO.Path.GetFileName(f)))}); pass the path of the one to load");
    }

    /// <summary>
    /// .bin files beside a llama2.c checkpoint that are not weights: llama2.c tokenizers
    /// (<c>tokenizer.bin</c>, <c>tok512.bin</c>) and PyTorch files (<c>pytorch_model.bin</c>, <c>training_args.bin</c>).
    /// </summary>
    private static bool IsCheckpointName(string fileName) =>
        !fileName.StartsWith("tok", StringComparison.OrdinalIgnoreCase)
        && !fileName.StartsWith("pytorch_model", StringComparison.OrdinalIgnoreCase)
        && !fileName.Equals("training_args.bin", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// Opens <paramref name="file"/> as <paramref name="loading"/> says. A copy is placed so that the first tensor's
    /// data starts a 64-byte cache line, found by reading the tensor table from a mapping first: GGUF aligns data
    /// to only 32 bytes, and the kernels' 512-bit loads run slower than 256-bit ones when they straddle lines.
    /// </summary>
    private static MappedFile OpenFile(string file, WeightLoading loading, Func<MappedFile, List<TensorInfo>> readTensors)
    {
        if (loading != WeightLoading.Copy)
            return MappedFile.Open(file, loading);
        long firstData = 0;
        using (MappedFile probe = MappedFile.Open(file))
        {
            List<TensorInfo> tensors = readTensors(probe);
            if (tensors.Count > 0)
                firstData = tensors.Min(t => t.Offset);
        }
        return MappedFile.Open(file, loading, firstData);
    }

    private static ModelWeights OpenGguf(string path, string file, LlamaModelShape? shape, WeightLoading loading)
    {
        MappedFile mapped = OpenFile(file, loading, static f => GgufFormat.Read(f).Tensors);
        try
        {
            GgufFormat.Contents contents = GgufFormat.Read(mapped);
            RopeLayout layout = GgufModel.RopeLayoutOf(contents.Metadata);
            if (shape is not null)
                GgufModel.CheckHyperparameters(contents.Metadata, shape);
            var tensors = contents.Tensors.ConvertAll(t => t.WithName(GgufModel.HuggingFaceName(t.Name)));
            return new ModelWeights(path, file, layout, [mapped], tensors, contents.Metadata);
        }
        catch
        {
            mapped.Dispose();
            throw;
        }
    }

    private static ModelWeights OpenLlama2c(string path, string file, LlamaModelShape? shape, WeightLoading loading)
    {
        MappedFile mapped = OpenFile(file, loading, static f => Llama2cFormat.Read(f).Tensors);
        try
        {
            (Llama2cFormat.Header header, List<TensorInfo> tensors) = Llama2cFormat.Read(mapped);
            if (shape is not null)
                Llama2cFormat.CheckHyperparameters(file, header, shape);
            return new ModelWeights(path, file, RopeLayout.AdjacentPairs, [mapped], tensors);
        }
        catch
        {
            mapped.Dispose();
            throw;
        }
    }

    private static ModelWeights OpenSafetensors(string path, string file, WeightLoading loading)
    {
        MappedFile mapped = OpenFile(file, loading, SafetensorsFormat.ReadTensors);
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
    private static ModelWeights OpenSharded(string path, string indexPath, WeightLoading loading)
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
                MappedFile file = OpenFile(shardPath, loading, SafetensorsFormat.ReadTensors);
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
    /// (row-major, [out][in] for a projection), as F32: a view of F32 data, else converted once from
    /// F16, BF16, Q8_0 or Q4_0.
    /// </summary>
    /// <exception cref="ModelFormatException">The tensor is missing, has another shape, or an unsupported dtype.</exception>
    public WeightTensor GetMatrix(string name, int rows, int cols)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        return Get(name, rows, cols, [rows, cols]);
    }

    /// <summary>Returns the vector <paramref name="name"/>, which must have shape [<paramref name="length"/>], as F32.</summary>
    /// <exception cref="ModelFormatException">The tensor is missing, has another shape, or an unsupported dtype.</exception>
    public WeightTensor GetVector(string name, int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        return Get(name, 1, length, [length]);
    }

    /// <summary>
    /// Returns the matrix <paramref name="name"/>, which must have shape [<paramref name="rows"/>, <paramref name="cols"/>],
    /// in the compute format <paramref name="format"/>. F32 and F16: a view into the file when it stores exactly that
    /// format, otherwise a copy converted once, on the first request (into the weight cache of a <see cref="WeightLoading.Map"/>
    /// load, else into memory the weights own). Q8_0, Q4_0 and Q4_K are returned in the kernels' layout
    /// (<see cref="BlockQuantization.ToKernelLayout"/>): blocks the file stores in that format are rearranged once (in place
    /// in a <see cref="WeightLoading.Copy"/>, else into a copy, cached as other conversions are), other types are
    /// expanded to F32 and encoded with llama.cpp's reference quantizers first.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="format"/> is Q8_0 or Q4_0 and <paramref name="cols"/> is not a multiple of 32.</exception>
    /// <exception cref="ModelFormatException">The tensor is missing, has another shape or an unsupported stored type, or is larger than 2 GB in <paramref name="format"/>.</exception>
    public PackedTensor GetPackedMatrix(string name, int rows, int cols, WeightFormat format)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        if (format is < WeightFormat.F32 or > WeightFormat.Q6_K)
            throw new ArgumentOutOfRangeException(nameof(format), format, "not a format of one tensor (a mix such as Q4_K_M is resolved per tensor by the generated code)");
        long rowBytes = BlockQuantization.RowBytes(format, cols); // throws ArgumentException for partial blocks

        lock (_lock)
        {
            Entry entry = Find(name, [rows, cols]);
            TensorInfo tensor = entry.Tensor;
            long bytes = ConvertedBytes(rows, cols, format);
            if (bytes > int.MaxValue)
                throw new ModelFormatException($"tensor {name} in {tensor.File.Path} takes {bytes} bytes as {format}; at most {int.MaxValue} are supported");

            bool stored = TensorConversion.Matches(tensor.DType, format);
            if (!stored && TensorConversion.IsBlockFormat(format) && TensorConversion.StoredFormat(tensor.DType) is WeightFormat storedFormat && TensorConversion.IsBlockFormat(storedFormat))
            {
                throw new ModelFormatException($"tensor {name} in {tensor.File.Path} is stored as {tensor.DType}, but the compiled model computes it in {format}: converting one "
                    + "quantized format into another loses precision and changes the results. Compile the model from this GGUF file ([LlamaModel(\"model.gguf\")]) "
                    + "or with the Weights format (or llama.cpp mix) the file was quantized with.");
            }
            byte* data;
            if (format is WeightFormat.F32 or WeightFormat.F16)
                data = stored && !CopiedIntoTheCache(tensor) ? tensor.File.Pointer + tensor.Offset : Converted(entry, rows, cols, format);
            else if (!BlockQuantization.HasKernelLayout(format))
                data = stored ? tensor.File.Pointer + tensor.Offset : Converted(entry, rows, cols, format); // read as stored: no kernel layout
            else
                data = stored && tensor.File.IsCopy && rows % BlockQuantization.KernelGroupRows == 0 && !SharesBytes(entry) ? ToKernelLayoutInPlaceOnce(entry, rows, cols, format) : Converted(entry, rows, cols, format);
            entry.Used = true;
            _views.Add(((nint)data, bytes));
            return new PackedTensor(name, format, rows, cols, (int)rowBytes, (int)bytes, data);
        }
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
            {
                _cache?.Complete(); // every tensor is bound: the cache a first load wrote is whole
                return;
            }
            unused.Sort(StringComparer.Ordinal);
            // A wrong model can have hundreds of unknown tensors; the first few are enough to see why.
            const int MaxListed = 20;
            string list = string.Join(", ", unused.GetRange(0, Math.Min(unused.Count, MaxListed)));
            if (unused.Count > MaxListed)
                list += $" and {unused.Count - MaxListed} more";
            throw new ModelFormatException($"unknown tensor(s) {list} in {_source}: the compiled model does not use them; do the weights match its config.json?");
        }
    }

    /// <summary>
    /// A 64-bit fingerprint of the weights as the model uses them: FNV-1a over each view handed out (in the order the
    /// model asked for them), its length and 16 samples of 64 bytes spread over it. Computed on first use, from the
    /// views (kernel layouts and converted copies included), so that a mapped and a copied load of one file agree;
    /// a saved session state carries it, and weights of the same shape with other values are told apart.
    /// </summary>
    public ulong Fingerprint
    {
        get
        {
            lock (_lock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                if (_fingerprint is ulong known)
                    return known;
                ulong hash = WeightCache.Offset;
                foreach ((nint start, long length) in _views)
                    hash = WeightCache.SampledHash((byte*)start, length, hash);
                _fingerprint = hash;
                return hash;
            }
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
                for (int i = 0; i < entry.Converted.Length; i++)
                {
                    if (entry.Converted[i] != 0)
                    {
                        NativeMemory.AlignedFree((void*)entry.Converted[i]);
                        entry.Converted[i] = 0;
                    }
                }
            }
            _cache?.Dispose();
            foreach (MappedFile file in _files)
                file.Dispose();
        }
    }

    /// <summary>Bytes of converted tensors held in memory the weights own (not in a mapped file): 0 for a load that mapped its cache.</summary>
    internal long OwnedBytes
    {
        get
        {
            lock (_lock)
                return _ownedBytes;
        }
    }

    /// <summary>The cache this load converts into or maps, null if it needed none (or is not a <see cref="WeightLoading.Map"/> load).</summary>
    internal WeightCache? Cache
    {
        get
        {
            lock (_lock)
                return _cache;
        }
    }

    private WeightTensor Get(string name, long rows, int cols, ReadOnlySpan<long> expectedShape)
    {
        lock (_lock)
        {
            Entry entry = Find(name, expectedShape);
            TensorInfo tensor = entry.Tensor;
            long count = rows * cols; // both are ints: the product fits in a long
            if (count > int.MaxValue)
                throw new ModelFormatException($"tensor {name} in {tensor.File.Path} has {count} elements; at most {int.MaxValue} are supported");

            float* data = tensor.DType == "F32" && !CopiedIntoTheCache(tensor)
                ? (float*)(tensor.File.Pointer + tensor.Offset)
                : (float*)Converted(entry, rows, cols, WeightFormat.F32);
            entry.Used = true;
            _views.Add(((nint)data, count * sizeof(float)));
            return new WeightTensor(name, data, (int)count);
        }
    }

    /// <summary>Looks <paramref name="name"/> up and checks its shape and stored type; call under the lock.</summary>
    private Entry Find(string name, ReadOnlySpan<long> expectedShape)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_tensors.TryGetValue(name, out Entry? entry))
            throw new ModelFormatException($"tensor {name} not found in {_source}");

        TensorInfo tensor = entry.Tensor;
        if (!expectedShape.SequenceEqual(tensor.Shape))
            throw new ModelFormatException($"tensor {name} in {tensor.File.Path}: expected shape {SafetensorsFormat.FormatShape(expectedShape)}, file has {SafetensorsFormat.FormatShape(tensor.Shape)}");
        if (!TensorConversion.IsSupported(tensor.DType))
            throw new ModelFormatException($"tensor {name} in {tensor.File.Path} has dtype {tensor.DType}; supported: {TensorConversion.SupportedList}");
        // Every kernel and conversion reads rows × stored row bytes from the tensor's start: the bytes the file holds
        // for it must be exactly that, whatever its reader checked (a safetensors reader cannot size a block type).
        long cols = expectedShape.IsEmpty ? 0 : expectedShape[^1];
        long elements = 1;
        foreach (long dimension in expectedShape)
            elements *= dimension; // the compiled shape: small enough not to overflow
        int blockWeights = TensorConversion.StoredFormat(tensor.DType) is WeightFormat storedFormat ? BlockQuantization.WeightsPerBlock(storedFormat) : 1;
        if (cols % blockWeights != 0)
            throw new ModelFormatException($"tensor {name} in {tensor.File.Path} is {tensor.DType} with rows of {cols} elements, not a multiple of {blockWeights}");
        long expectedBytes = cols == 0 ? 0 : elements / cols * TensorConversion.StoredRowBytes(tensor.DType, cols);
        if (tensor.ByteLength != expectedBytes)
            throw new ModelFormatException($"tensor {name} in {tensor.File.Path}: shape {SafetensorsFormat.FormatShape(expectedShape)} of {tensor.DType} needs {expectedBytes} bytes, the file holds {tensor.ByteLength}");
        return entry;
    }

    /// <summary>
    /// True for a small tensor used as stored (a norm vector) that a load writing or mapping a weight cache takes from
    /// the cache instead of the weights file: its few kilobytes would otherwise map a whole page-cache folio of the file
    /// (2 MB with large folios) that the load reads nothing else from — 90 MB of TinyLlama Q8_0's resident set.
    /// </summary>
    private bool CopiedIntoTheCache(TensorInfo tensor) => _cache is not null && tensor.ByteLength <= SmallTensorBytes;

    /// <summary>Tensors up to this size are copied into a weight cache the load has (see <see cref="CopiedIntoTheCache"/>).</summary>
    private const long SmallTensorBytes = 64 << 10;

    /// <summary>Bytes of a [<paramref name="rows"/>, <paramref name="cols"/>] matrix in <paramref name="format"/>: whole groups of rows in the Q8_0/Q4_0/Q4_K kernel layout.</summary>
    private static long ConvertedBytes(long rows, int cols, WeightFormat format) =>
        BlockQuantization.HasKernelLayout(format) ? BlockQuantization.KernelLayoutBytes(format, (int)rows, cols) : rows * BlockQuantization.RowBytes(format, cols);

    /// <summary>
    /// A tensor converted to <paramref name="format"/>: for a <see cref="WeightLoading.Map"/> load, mapped from the
    /// weights' cache file (converted into it if it does not hold the tensor yet); otherwise, or when no cache can be
    /// written, in memory the weights own.
    /// </summary>
    private byte* Converted(Entry entry, long rows, int cols, WeightFormat format)
    {
        if (_loading != WeightLoading.Map)
            return ConvertOnce(entry, rows, cols, format);
        byte* cached = (byte*)entry.Cached[(int)format];
        if (cached is not null)
            return cached;
        _cache ??= WeightCache.Open(_source, _files, _cacheDirectory, _userCacheDirectory);
        cached = _cache.Get(entry.Tensor, rows, cols, format, ConvertedBytes(rows, cols, format));
        if (cached is null)
            return ConvertOnce(entry, rows, cols, format);
        entry.Cached[(int)format] = (nint)cached;
        return cached;
    }

    /// <summary>
    /// Converts a tensor to <paramref name="format"/> in new native memory (<see cref="MappedFile.AllocateWeightMemory"/>:
    /// cache-line aligned, huge pages from 2 MB), on its first
    /// request in that format only. The stored size was checked against the file when the header was
    /// read, and the shape against the request, so the allocation is a bounded multiple of stored bytes.
    /// </summary>
    private byte* ConvertOnce(Entry entry, long rows, int cols, WeightFormat format)
    {
        byte* converted = (byte*)entry.Converted[(int)format];
        if (converted is not null)
            return converted;
        TensorInfo tensor = entry.Tensor;
        long bytes = ConvertedBytes(rows, cols, format);
        converted = MappedFile.AllocateWeightMemory((nuint)bytes);
        try
        {
            TensorConversion.Convert(tensor.DType, tensor.File.Pointer + tensor.Offset, rows, cols, format, converted, entry.InKernelLayout);
        }
        catch
        {
            NativeMemory.AlignedFree(converted);
            throw;
        }
        entry.Converted[(int)format] = (nint)converted;
        _ownedBytes += bytes;
        return converted;
    }

    /// <summary>
    /// Rearranges a Q8_0/Q4_0/Q4_K tensor of a <see cref="WeightLoading.Copy"/> (whole groups of rows) into the kernels' layout
    /// where it lies, once, one group of rows at a time through a scratch group. Later conversions of the tensor read it
    /// back through <see cref="Entry.InKernelLayout"/>.
    /// </summary>
    private static byte* ToKernelLayoutInPlaceOnce(Entry entry, int rows, int cols, WeightFormat format)
    {
        byte* data = entry.Tensor.File.Pointer + entry.Tensor.Offset;
        if (entry.InKernelLayout)
            return data;
        int groupBytes = (int)BlockQuantization.KernelLayoutBytes(format, BlockQuantization.KernelGroupRows, cols);
        byte[] group = new byte[groupBytes];
        for (long start = 0; start < (long)rows * groupBytes / BlockQuantization.KernelGroupRows; start += groupBytes)
        {
            var stored = new Span<byte>(data + start, groupBytes);
            stored.CopyTo(group);
            BlockQuantization.ToKernelLayout(format, BlockQuantization.KernelGroupRows, cols, group, stored);
        }
        entry.InKernelLayout = true;
        return data;
    }

    /// <summary>
    /// True when another tensor's bytes overlap this one's (a file may point two tensors at the same data): such a
    /// tensor is never rearranged in place, which would change the other one too.
    /// </summary>
    private bool SharesBytes(Entry entry)
    {
        TensorInfo t = entry.Tensor;
        foreach (Entry other in _tensors.Values)
        {
            TensorInfo o = other.Tensor;
            if (other != entry && o.File == t.File && o.Offset < t.Offset + t.ByteLength && t.Offset < o.Offset + o.ByteLength)
                return true;
        }
        return false;
    }

    /// <summary>A tensor plus what loading has done with it.</summary>
    private sealed class Entry(TensorInfo tensor)
    {
        public TensorInfo Tensor { get; } = tensor;

        /// <summary>Set once the model requested the tensor or marked it used.</summary>
        public bool Used { get; set; }

        /// <summary>
        /// Converted copies owned by the weights, indexed by <see cref="WeightFormat"/>; zero until first
        /// requested in that format (never set for a stored F32/F16 format, or a stored block format of a copied file,
        /// which are used in place).
        /// </summary>
        public nint[] Converted { get; } = new nint[(int)WeightFormat.Q6_K + 1];

        /// <summary>Converted copies in the weights' cache file, indexed by <see cref="WeightFormat"/>; zero until first requested.</summary>
        public nint[] Cached { get; } = new nint[(int)WeightFormat.Q6_K + 1];

        /// <summary>The stored Q8_0/Q4_0/Q4_K blocks were rearranged in place into the kernels' layout (a copied file only).</summary>
        public bool InKernelLayout { get; set; }
    }
}
