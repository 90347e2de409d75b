using System.Collections.Generic;
using System.Globalization;
using Llama.Compiled.Generator.Json;
using Llama.Compiled.Generator.Model;

namespace Llama.Compiled.Generator;

/// <summary>
/// Turns a GGUF header into the <see cref="ModelSpec"/> a config.json gives, with every matrix's stored format. The
/// generator may not read the GGUF itself (RS1035, and it can be many GB): build/Llama.Compiled.targets reads its header
/// before the compiler runs and writes it as a small JSON file, the AdditionalFiles item this parses:
/// <code>
/// { "format": "llama-compiled-gguf-header/1", "gguf": "/full/path/model.gguf", "version": 3,
///   "metadata": { "general.architecture": "llama", "llama.block_count": 5, ...,
///                 "tokenizer.ggml.tokens": { "array": "string", "length": 512 } },
///   "tensors": [ { "name": "token_embd.weight", "type": 0, "shape": [512, 64] }, ... ],
///   "ropeFrequencyFactors": [ 1, 1, ..., 32 ] }
/// </code>
/// Metadata keeps the file's scalars as JSON numbers, strings and booleans; arrays (and strings over 1 KB) are their
/// element type and length only. Tensor shapes are rows first (the reverse of GGUF's order), types are ggml's numbers.
/// The one tensor whose data is read is rope_freqs.weight (an F32 vector of HeadDim/2, Llama 3's RoPE scaling), into
/// "ropeFrequencyFactors": its values change the compiled inverse frequencies.
/// Keys and defaults follow llama.cpp's loader; the hyperparameters are checked against the tensor shapes, so that a
/// file that the runtime would reject at load is a build error naming the tensor instead. Problems are reported at the
/// attribute's path argument, naming the GGUF: the header file is build output nobody edits.
/// </summary>
internal sealed class GgufHeaderParser
{
    /// <summary>How the header files the targets write end (one per GGUF, named after it).</summary>
    public const string FileSuffix = ".gguf-header.json";

    /// <summary>The header's "format": a different layout is a header of another version of the targets.</summary>
    private const string HeaderFormat = "llama-compiled-gguf-header/1";

    /// <summary>Bounds the generated code, as for a config.json: one straight-line call per layer.</summary>
    private const int MaxLayers = 1024;

    private readonly ConfigFile _file;
    private readonly List<DiagnosticInfo> _diagnostics = new();
    private readonly Dictionary<string, (int Type, long[] Shape)> _tensors = new(System.StringComparer.Ordinal);
    private JsonObject _metadata = null!;
    private JsonArray? _ropeFrequencyFactors;

    private GgufHeaderParser(ConfigFile file) => _file = file;

    /// <summary>The GGUF a header was read from (its "gguf"), or null when the text is not a header of this format.</summary>
    public static string? GgufPathOf(string headerText) =>
        JsonParser.Parse(headerText, out _, out _) is JsonObject root
        && root.Find("format")?.Value is JsonString { Value: HeaderFormat }
        && root.Find("gguf")?.Value is JsonString gguf
            ? gguf.Value
            : null;

    /// <summary>Parses the header <paramref name="file"/>; returns null when any diagnostic was reported.</summary>
    /// <param name="file">The header text; its path is the GGUF's.</param>
    /// <param name="maxContextCap">The attribute's MaxContext (0 = the file's context_length).</param>
    /// <param name="diagnostics">Receives the problems found.</param>
    public static ModelSpec? Parse(ConfigFile file, int maxContextCap, List<DiagnosticInfo> diagnostics)
    {
        var parser = new GgufHeaderParser(file);
        ModelSpec? spec = parser.ReadHeader() ? parser.Parse(maxContextCap) : null;
        diagnostics.AddRange(parser._diagnostics);
        return parser._diagnostics.Count == 0 ? spec : null;
    }

    /// <summary>The GGUF item itself reached the generator: nothing read its header.</summary>
    public static DiagnosticInfo NotRead(ConfigFile file) =>
        DiagnosticInfo.AtAttribute(Diagnostics.GgufHeaderNotRead, DiagnosticAnchor.ConfigPathArgument, file.Path,
            "its header was not read at build time, because build/Llama.Compiled.targets is not imported (the Llama.Compiled package imports it; a project that references src/Runtime by ProjectReference needs <Import Project=\"path/to/src/Runtime/build/Llama.Compiled.targets\" />)");

    /// <summary>The metadata object and the tensor table; false (with a diagnostic) when the header is not one the targets wrote.</summary>
    private bool ReadHeader()
    {
        if (JsonParser.Parse(_file.Text, out _, out _) is not JsonObject root
            || root.Find("format")?.Value is not JsonString { Value: HeaderFormat }
            || root.Find("metadata")?.Value is not JsonObject metadata
            || root.Find("tensors")?.Value is not JsonArray tensors)
            return HeaderUnreadable("it is not a header of the format " + HeaderFormat);
        _metadata = metadata;
        _ropeFrequencyFactors = root.Find("ropeFrequencyFactors")?.Value as JsonArray;
        foreach (JsonNode item in tensors.Items)
        {
            if (item is not JsonObject tensor
                || tensor.Find("name")?.Value is not JsonString name
                || tensor.Find("type")?.Value is not JsonNumber type
                || !int.TryParse(type.Text, NumberStyles.None, CultureInfo.InvariantCulture, out int ggmlType)
                || tensor.Find("shape")?.Value is not JsonArray shape
                || !TryReadShape(shape, out long[] dims))
                return HeaderUnreadable("a tensor entry lacks its name, type or shape");
            _tensors[name.Value] = (ggmlType, dims);
        }
        return true;
    }

    private bool HeaderUnreadable(string reason)
    {
        Report(Diagnostics.GgufHeaderNotRead, $"its header file ({reason}) was not written by this version of build/Llama.Compiled.targets; rebuild the project");
        return false;
    }

    private static bool TryReadShape(JsonArray shape, out long[] dims)
    {
        dims = new long[shape.Items.Count];
        for (int i = 0; i < dims.Length; i++)
        {
            if (shape.Items[i] is not JsonNumber n || !long.TryParse(n.Text, NumberStyles.None, CultureInfo.InvariantCulture, out dims[i]))
                return false;
        }
        return true;
    }

    private ModelSpec? Parse(int maxContextCap)
    {
        string? arch = String("general.architecture");
        if (arch is null)
        {
            Report(Diagnostics.MissingKey, "general.architecture", "the model family, 'llama' or 'qwen2'");
            return null;
        }
        if (System.Array.IndexOf(LlamaArchitecture.ModelTypes, arch) < 0)
        {
            Report(Diagnostics.Unsupported, "general.architecture", $"architecture '{arch}'; supported: {string.Join(", ", LlamaArchitecture.ModelTypes)}");
            return null;
        }

        int hiddenSize = RequiredInt(arch + ".embedding_length", "the width of the residual stream");
        int intermediateSize = RequiredInt(arch + ".feed_forward_length", "the width of the feed-forward layer");
        int layerCount = RequiredInt(arch + ".block_count", "the number of decoder layers");
        int headCount = RequiredInt(arch + ".attention.head_count", "the number of query heads");
        int kvHeadCount = Int(arch + ".attention.head_count_kv") ?? headCount;
        int contextLength = RequiredInt(arch + ".context_length", "the context the model was trained for");
        double rmsNormEps = RequiredFloat(arch + ".attention.layer_norm_rms_epsilon", "the RMSNorm epsilon");
        double ropeTheta = Float(arch + ".rope.freq_base") ?? 10000; // llama.cpp's default
        int vocabSize = _metadata.Find(arch + ".vocab_size") is null && _metadata.Find("tokenizer.ggml.tokens") is not null
            ? ArrayLength("tokenizer.ggml.tokens") ?? 0
            : RequiredInt(arch + ".vocab_size", "the number of tokens; or the vocabulary, tokenizer.ggml.tokens");
        int bosTokenId = Int("tokenizer.ggml.bos_token_id") ?? -1;
        var eosTokenIds = new List<int>();
        // llama.cpp ends generation at any of these; Llama 3's eot/eom are the end of a turn or of a tool call.
        foreach (string key in new[] { "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id" })
        {
            if (Int(key) is int id && !eosTokenIds.Contains(id))
                eosTokenIds.Add(id);
        }
        RopeScaling? ropeScaling = ParseRopeScaling(arch);
        if (_diagnostics.Count > 0)
            return null;

        RequirePositive(arch + ".embedding_length", hiddenSize);
        RequirePositive(arch + ".feed_forward_length", intermediateSize);
        RequirePositive(arch + ".block_count", layerCount);
        if (layerCount > MaxLayers)
            Report(Diagnostics.InvalidValue, arch + ".block_count", $"{layerCount} layers; the generator writes one call per layer and supports at most {MaxLayers}");
        RequirePositive(arch + ".attention.head_count", headCount);
        RequirePositive(arch + ".attention.head_count_kv", kvHeadCount);
        RequirePositive(arch + ".context_length", contextLength);
        if (vocabSize <= 0 && _diagnostics.Count == 0)
            Report(Diagnostics.InvalidValue, arch + ".vocab_size", $"{vocabSize} is not a positive number of tokens");
        if (rmsNormEps <= 0 || rmsNormEps >= 1)
            Report(Diagnostics.InvalidValue, arch + ".attention.layer_norm_rms_epsilon", "it must be a small positive number such as 1e-5");
        if (ropeTheta <= 1)
            Report(Diagnostics.InvalidValue, arch + ".rope.freq_base", "the RoPE base must be greater than 1 (usually 10000 or 500000)");
        foreach (int id in eosTokenIds)
        {
            if (id < 0 || id >= vocabSize)
                Report(Diagnostics.InvalidValue, "tokenizer.ggml.eos_token_id", $"token id {id} is not below the vocabulary size ({vocabSize})");
        }
        if (bosTokenId >= vocabSize || bosTokenId < -1)
            Report(Diagnostics.InvalidValue, "tokenizer.ggml.bos_token_id", $"token id {bosTokenId} is not below the vocabulary size ({vocabSize})");
        if (_diagnostics.Count > 0)
            return null;
        if (headCount % kvHeadCount != 0)
            Report(Diagnostics.InvalidValue, arch + ".attention.head_count_kv", $"the query heads ({headCount}) must be a multiple of the key/value heads ({kvHeadCount})");

        // llama.cpp: the key width is attention.key_length, else embedding_length / head_count; RoPE rotates
        // rope.dimension_count of it, which for LLaMA-family models is all of it.
        int headDim = Int(arch + ".attention.key_length") ?? (hiddenSize % headCount == 0 ? hiddenSize / headCount : 0);
        if (headDim <= 0)
        {
            Report(Diagnostics.InvalidValue, arch + ".embedding_length",
                $"{hiddenSize} is not divisible by the {headCount} heads, and the file has no {arch}.attention.key_length");
            return null;
        }
        if (headDim % 2 != 0)
            Report(Diagnostics.InvalidValue, arch + ".attention.key_length", $"the head dimension ({headDim}) is odd, but RoPE rotates pairs of dimensions");
        if (Int(arch + ".attention.value_length") is int valueLength && valueLength != headDim)
            Report(Diagnostics.Unsupported, arch + ".attention.value_length", $"value heads of {valueLength} and key heads of {headDim}; LLaMA-family attention has one head width");
        if (Int(arch + ".rope.dimension_count") is int ropeDims && ropeDims != headDim)
            Report(Diagnostics.Unsupported, arch + ".rope.dimension_count", $"RoPE over {ropeDims} of the {headDim} dimensions of a head (partial rotary); LLaMA-family models rotate all of them");

        int maxContext = contextLength;
        if (maxContextCap < 0)
            _diagnostics.Add(DiagnosticInfo.AtAttribute(Diagnostics.InvalidAttribute, DiagnosticAnchor.MaxContextArgument,
                "MaxContext", $"{maxContextCap} is negative; use a positive context length, or 0 for the file's {arch}.context_length"));
        else if (maxContextCap > contextLength)
            _diagnostics.Add(DiagnosticInfo.AtAttribute(Diagnostics.InvalidAttribute, DiagnosticAnchor.MaxContextArgument,
                "MaxContext", $"{maxContextCap} exceeds the model's {arch}.context_length ({contextLength})"));
        else if (maxContextCap > 0)
            maxContext = maxContextCap;

        // Every tensor and per-layer KV cache is addressed with 32-bit indices (spans).
        CheckFitsInt32(arch + ".vocab_size", (long)vocabSize * hiddenSize, "the embedding [vocab, embedding_length]");
        CheckFitsInt32(arch + ".feed_forward_length", (long)intermediateSize * hiddenSize, "a feed-forward matrix");
        CheckFitsInt32(arch + ".attention.head_count", (long)headCount * headDim * hiddenSize, "the query projection");
        CheckFitsInt32(arch + ".context_length", (long)kvHeadCount * headDim * maxContext,
            "one layer's KV cache; cap the context with [LlamaModel(..., MaxContext = 4096)]");
        if (_diagnostics.Count > 0)
            return null;

        var shape = new Shape(hiddenSize, intermediateSize, headCount * headDim, kvHeadCount * headDim, vocabSize);
        EquatableArray<float> ropeFrequencyFactors = ReadRopeFrequencyFactors(headDim);
        return ReadTensors(arch, layerCount, shape, out StoredFormats formats, out bool qkvBias, out bool outputBias, out bool mlpBias)
            ? new ModelSpec(arch, hiddenSize, intermediateSize, layerCount, headCount, kvHeadCount, headDim, vocabSize, maxContext,
                rmsNormEps, ropeTheta, TiedEmbeddings: formats.Classifier is null, bosTokenId, EquatableArray.From(eosTokenIds),
                qkvBias, outputBias, mlpBias, ropeScaling, TorchDtype: "", formats, ropeFrequencyFactors)
            : null;
    }

    /// <summary>
    /// GGUF's RoPE scaling keys: none, or linear with its factor. YaRN and LongRoPE change RoPE at run time and are not
    /// supported; Llama 3's scaling is not a key but the tensor rope_freqs.weight (<see cref="ReadRopeFrequencyFactors"/>).
    /// </summary>
    private RopeScaling? ParseRopeScaling(string arch)
    {
        string? type = String(arch + ".rope.scaling.type");
        double? factor = Float(arch + ".rope.scaling.factor");
        if (type is null && Float(arch + ".rope.scale_linear") is double legacy)
            (type, factor) = ("linear", legacy); // the key older converters wrote
        switch (type)
        {
            case null or "none":
                return null;
            case "linear":
                if (factor is not > 0)
                {
                    Report(Diagnostics.InvalidValue, arch + ".rope.scaling.factor", "linear RoPE scaling needs a positive factor");
                    return null;
                }
                // A factor of 1 is what converters write for "no scaling".
                return factor == 1 ? null : new RopeScaling("linear", factor.Value, 0, 0, 0);
            default:
                Report(Diagnostics.Unsupported, arch + ".rope.scaling.type", $"RoPE scaling type '{type}'; supported: none, linear");
                return null;
        }
    }

    /// <summary>
    /// rope_freqs.weight, the values the targets copied from the file: llama.cpp's converter writes Llama 3's rope_scaling
    /// as one factor per rotated pair, and llama.cpp's rope divides each pair's angle by its factor (and requires F32 data
    /// of n_rot/2 elements). Empty when the file has no such tensor.
    /// </summary>
    private EquatableArray<float> ReadRopeFrequencyFactors(int headDim)
    {
        const string name = "rope_freqs.weight";
        if (!_tensors.TryGetValue(name, out (int Type, long[] Shape) tensor))
            return EquatableArray<float>.Empty;
        if (!Expect(name, new long[] { headDim / 2 }))
            return EquatableArray<float>.Empty;
        if (tensor.Type != 0)
        {
            Report(Diagnostics.Unsupported, name, $"RoPE frequency factors stored as {TypeName(tensor.Type)}; llama.cpp reads them only as F32");
            return EquatableArray<float>.Empty;
        }
        if (_ropeFrequencyFactors is null || _ropeFrequencyFactors.Items.Count != headDim / 2)
        {
            HeaderUnreadable("it lacks the values of rope_freqs.weight");
            return EquatableArray<float>.Empty;
        }
        var factors = new float[headDim / 2];
        for (int j = 0; j < factors.Length; j++)
        {
            // NaN and the infinities arrive as strings: not JSON numbers.
            if (_ropeFrequencyFactors.Items[j] is not JsonNumber number
                || !float.TryParse(number.Text, NumberStyles.Float, CultureInfo.InvariantCulture, out factors[j])
                || float.IsInfinity(factors[j]) || factors[j] <= 0)
            {
                string value = _ropeFrequencyFactors.Items[j] switch { JsonNumber n => n.Text, JsonString s => s.Value, JsonNode other => other.Kind };
                Report(Diagnostics.InvalidValue, name, $"factor {j} is {value}; RoPE frequency factors divide the frequencies and must be finite and positive");
                return EquatableArray<float>.Empty;
            }
        }
        return new EquatableArray<float>(factors);
    }

    /// <summary>The hyperparameters' matrix sizes, to check the tensor table with.</summary>
    private readonly record struct Shape(int Hidden, int Intermediate, int QueryDim, int KvDim, int Vocab);

    /// <summary>
    /// Checks that every tensor the model needs is there with the shape the hyperparameters give and a type the compiler
    /// has kernels for, and reads the matrices' formats. Untied embeddings are an output.weight; biases are what blk.0 has.
    /// </summary>
    private bool ReadTensors(string arch, int layerCount, Shape s, out StoredFormats formats, out bool qkvBias, out bool outputBias, out bool mlpBias)
    {
        ComputeFormat embedding = Matrix(LlamaArchitecture.GgufName(LlamaTensor.TokenEmbedding), s.Vocab, s.Hidden);
        ComputeFormat? classifier = _tensors.ContainsKey(LlamaArchitecture.GgufName(LlamaTensor.Classifier))
            ? Matrix(LlamaArchitecture.GgufName(LlamaTensor.Classifier), s.Vocab, s.Hidden)
            : null;
        Vector(LlamaArchitecture.GgufName(LlamaTensor.FinalNorm), s.Hidden);

        qkvBias = _tensors.ContainsKey(LlamaArchitecture.GgufName(LlamaTensor.Query, 0, bias: true)) || LlamaArchitecture.HasQkvBias(arch);
        outputBias = _tensors.ContainsKey(LlamaArchitecture.GgufName(LlamaTensor.AttentionOutput, 0, bias: true));
        mlpBias = _tensors.ContainsKey(LlamaArchitecture.GgufName(LlamaTensor.Gate, 0, bias: true));
        var layers = new LayerFormats[layerCount];
        for (int layer = 0; layer < layerCount && _diagnostics.Count == 0; layer++)
        {
            Vector(LlamaArchitecture.GgufName(LlamaTensor.AttentionNorm, layer), s.Hidden);
            Vector(LlamaArchitecture.GgufName(LlamaTensor.FeedForwardNorm, layer), s.Hidden);
            layers[layer] = new LayerFormats(
                Matrix(LlamaArchitecture.GgufName(LlamaTensor.Query, layer), s.QueryDim, s.Hidden),
                Matrix(LlamaArchitecture.GgufName(LlamaTensor.Key, layer), s.KvDim, s.Hidden),
                Matrix(LlamaArchitecture.GgufName(LlamaTensor.Value, layer), s.KvDim, s.Hidden),
                Matrix(LlamaArchitecture.GgufName(LlamaTensor.AttentionOutput, layer), s.Hidden, s.QueryDim),
                Matrix(LlamaArchitecture.GgufName(LlamaTensor.Gate, layer), s.Intermediate, s.Hidden),
                Matrix(LlamaArchitecture.GgufName(LlamaTensor.Up, layer), s.Intermediate, s.Hidden),
                Matrix(LlamaArchitecture.GgufName(LlamaTensor.Down, layer), s.Hidden, s.Intermediate));
            if (qkvBias)
            {
                Vector(LlamaArchitecture.GgufName(LlamaTensor.Query, layer, bias: true), s.QueryDim);
                Vector(LlamaArchitecture.GgufName(LlamaTensor.Key, layer, bias: true), s.KvDim);
                Vector(LlamaArchitecture.GgufName(LlamaTensor.Value, layer, bias: true), s.KvDim);
            }
            if (outputBias)
                Vector(LlamaArchitecture.GgufName(LlamaTensor.AttentionOutput, layer, bias: true), s.Hidden);
            if (mlpBias)
            {
                Vector(LlamaArchitecture.GgufName(LlamaTensor.Gate, layer, bias: true), s.Intermediate);
                Vector(LlamaArchitecture.GgufName(LlamaTensor.Up, layer, bias: true), s.Intermediate);
                Vector(LlamaArchitecture.GgufName(LlamaTensor.Down, layer, bias: true), s.Hidden);
            }
        }
        formats = new StoredFormats(embedding, classifier, EquatableArray.From(layers));
        return _diagnostics.Count == 0;
    }

    /// <summary>A [rows, cols] matrix's format; a missing tensor, a wrong shape or an unsupported type is reported.</summary>
    private ComputeFormat Matrix(string name, int rows, int cols)
    {
        if (!Expect(name, new long[] { rows, cols }))
            return ComputeFormat.F32;
        int type = _tensors[name].Type;
        if (!TryMapType(type, out ComputeFormat format, out int blockElements))
        {
            _diagnostics.Add(At(Diagnostics.UnsupportedTensorType, name, TypeName(type)));
            return ComputeFormat.F32;
        }
        if (cols % blockElements != 0)
            _diagnostics.Add(At(Diagnostics.TensorShape, name,
                $"is stored as {TypeName(type)}, whose blocks hold {blockElements} weights, but its rows have {cols}: the file is corrupted"));
        return format;
    }

    /// <summary>A norm or bias vector: any float type (the runtime converts them to F32 at load).</summary>
    private void Vector(string name, int length)
    {
        if (Expect(name, new long[] { length }) && _tensors[name].Type is not (0 or 1 or 30))
            _diagnostics.Add(At(Diagnostics.UnsupportedTensorType, name, TypeName(_tensors[name].Type)));
    }

    private bool Expect(string name, long[] expected)
    {
        if (!_tensors.TryGetValue(name, out (int Type, long[] Shape) tensor))
        {
            _diagnostics.Add(At(Diagnostics.TensorShape, name, $"is missing; a model with these hyperparameters has it, of shape {FormatShape(expected)}"));
            return false;
        }
        if (tensor.Shape.Length != expected.Length || !System.Linq.Enumerable.SequenceEqual(tensor.Shape, expected))
        {
            _diagnostics.Add(At(Diagnostics.TensorShape, name,
                $"has shape {FormatShape(tensor.Shape)}, but the file's hyperparameters give {FormatShape(expected)} (rows first)"));
            return false;
        }
        return true;
    }

    private static string FormatShape(long[] shape) => "[" + string.Join(", ", shape) + "]";

    /// <summary>
    /// ggml's tensor types that the compiler computes with as they are stored; BF16 converts to F32 exactly at load.
    /// <paramref name="blockElements"/> is the weights per block, which rows must split into.
    /// </summary>
    private static bool TryMapType(int ggmlType, out ComputeFormat format, out int blockElements)
    {
        (format, blockElements) = ggmlType switch
        {
            0 => (ComputeFormat.F32, 1),
            1 => (ComputeFormat.F16, 1),
            2 => (ComputeFormat.Q4_0, 32),
            3 => (ComputeFormat.Q4_1, 32),
            6 => (ComputeFormat.Q5_0, 32),
            7 => (ComputeFormat.Q5_1, 32),
            8 => (ComputeFormat.Q8_0, 32),
            12 => (ComputeFormat.Q4_K, 256),
            13 => (ComputeFormat.Q5_K, 256),
            14 => (ComputeFormat.Q6_K, 256),
            30 => (ComputeFormat.F32, 1),
            _ => (ComputeFormat.F32, 0),
        };
        return blockElements > 0;
    }

    /// <summary>ggml's name of a tensor type (enum ggml_type), as the runtime's GGUF reader names them.</summary>
    private static string TypeName(int type) => type switch
    {
        0 => "F32", 1 => "F16", 2 => "Q4_0", 3 => "Q4_1", 6 => "Q5_0", 7 => "Q5_1", 8 => "Q8_0", 9 => "Q8_1",
        10 => "Q2_K", 11 => "Q3_K", 12 => "Q4_K", 13 => "Q5_K", 14 => "Q6_K", 15 => "Q8_K",
        16 => "IQ2_XXS", 17 => "IQ2_XS", 18 => "IQ3_XXS", 19 => "IQ1_S", 20 => "IQ4_NL", 21 => "IQ3_S",
        22 => "IQ2_S", 23 => "IQ4_XS", 24 => "I8", 25 => "I16", 26 => "I32", 27 => "I64", 28 => "F64",
        29 => "IQ1_M", 30 => "BF16", 34 => "TQ1_0", 35 => "TQ2_0", 39 => "MXFP4",
        _ => "#" + type.ToString(CultureInfo.InvariantCulture),
    };

    // ---------------------------------------------------------------- metadata values

    private int RequiredInt(string key, string meaning)
    {
        if (_metadata.Find(key) is null)
        {
            Report(Diagnostics.MissingKey, key, meaning);
            return 0;
        }
        return Int(key) ?? 0;
    }

    private double RequiredFloat(string key, string meaning)
    {
        if (_metadata.Find(key) is null)
        {
            Report(Diagnostics.MissingKey, key, meaning);
            return 0;
        }
        return Float(key) ?? 0;
    }

    /// <summary>An integer of any GGUF integer type that fits an int; absent is null.</summary>
    private int? Int(string key)
    {
        JsonProperty? property = _metadata.Find(key);
        if (property is null)
            return null;
        if (property.Value is JsonNumber number && int.TryParse(number.Text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int value))
            return value;
        WrongType(property, "an integer (that fits 32 bits)");
        return null;
    }

    /// <summary>A float32/float64 (or integer) value; absent is null.</summary>
    private double? Float(string key)
    {
        JsonProperty? property = _metadata.Find(key);
        if (property is null)
            return null;
        if (property.Value is JsonNumber number
            && double.TryParse(number.Text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value)
            && !double.IsInfinity(value))
            return value;
        WrongType(property, "a finite number");
        return null;
    }

    private string? String(string key)
    {
        JsonProperty? property = _metadata.Find(key);
        if (property is null)
            return null;
        if (property.Value is JsonString s)
            return s.Value;
        WrongType(property, "a string");
        return null;
    }

    /// <summary>The length of an array value; absent is null.</summary>
    private int? ArrayLength(string key)
    {
        JsonProperty? property = _metadata.Find(key);
        if (property is null)
            return null;
        if (property.Value is JsonObject array && array.Find("array") is not null
            && array.Find("length")?.Value is JsonNumber length
            && int.TryParse(length.Text, NumberStyles.None, CultureInfo.InvariantCulture, out int n))
            return n;
        WrongType(property, "an array");
        return null;
    }

    private void WrongType(JsonProperty property, string expected)
    {
        string actual = property.Value switch
        {
            JsonObject o when o.Find("array")?.Value is JsonString element => $"an array of {element.Value}",
            JsonObject => "a long string",
            JsonString s => $"the string \"{s.Value}\"",
            JsonNumber n => $"the number {n.Text}",
            JsonBoolean b => b.Value ? "true" : "false",
            _ => property.Value.Kind,
        };
        Report(Diagnostics.WrongType, property.Name, expected, actual);
    }

    private void RequirePositive(string key, int value)
    {
        if (value <= 0 && _metadata.Find(key) is not null)
            Report(Diagnostics.InvalidValue, key, $"{value} is not a positive size");
    }

    private void CheckFitsInt32(string key, long elements, string what)
    {
        if (elements > int.MaxValue)
            Report(Diagnostics.Unsupported, key, $"{what} would hold {elements} elements, more than 2^31 - 1");
    }

    private void Report(Microsoft.CodeAnalysis.DiagnosticDescriptor descriptor, params string[] args) =>
        _diagnostics.Add(At(descriptor, args));

    /// <summary>At the attribute's path argument, with the GGUF's path as the message's first argument.</summary>
    private DiagnosticInfo At(Microsoft.CodeAnalysis.DiagnosticDescriptor descriptor, params string[] args)
    {
        var messageArgs = new string[args.Length + 1];
        messageArgs[0] = _file.Path;
        args.CopyTo(messageArgs, 1);
        return DiagnosticInfo.AtAttribute(descriptor, DiagnosticAnchor.ConfigPathArgument, messageArgs);
    }
}
