using System;
using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Text;

namespace Llama.Compiled.Tools;

/// <summary>
/// Writes GGUF version 3 files, streaming: metadata and the tensor table are declared first
/// (<see cref="AddString"/>..., <see cref="AddTensor"/>), then each tensor's data is written in the order the
/// tensors were added (<see cref="WriteTensorData(string, ReadOnlySpan{float})"/>), converted or quantized
/// on the way; only one tensor is in memory at a time. <see cref="Finish"/> checks that every tensor was
/// written. Tensor shapes are given outermost first (row-major, [rows, cols]) and stored innermost first as
/// GGUF requires; data is aligned to 32 bytes (or <c>general.alignment</c> if added).
/// </summary>
/// <example>
/// <code>
/// using var writer = new GgufWriter("model.gguf");
/// writer.AddString("general.architecture", "llama");
/// writer.AddTensor("token_embd.weight", [512, 64], GgufTensorType.Q8_0);
/// writer.WriteTensorData("token_embd.weight", embedding); // 512·64 floats, row-major
/// writer.Finish();
/// </code>
/// </example>
public sealed class GgufWriter : IDisposable
{
    /// <summary>The data alignment used unless <c>general.alignment</c> is added.</summary>
    public const int DefaultAlignment = 32;

    private static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly Stream _stream;
    private readonly bool _leaveOpen;
    private readonly MemoryStream _metadata = new();
    private readonly HashSet<string> _keys = new(StringComparer.Ordinal);
    private readonly List<PendingTensor> _tensors = [];
    private readonly HashSet<string> _tensorNames = new(StringComparer.Ordinal);
    private int _alignment = DefaultAlignment;
    private int _metadataCount;
    private long _dataSize;     // bytes of the data section declared so far (each tensor padded)
    private long _position;     // bytes written to the stream
    private int _nextTensor;
    private bool _headerWritten;
    private bool _finished;
    private bool _disposed;

    /// <summary>Creates (or overwrites) the file at <paramref name="path"/>.</summary>
    public GgufWriter(string path)
        : this(new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 1 << 16), leaveOpen: false)
    {
    }

    /// <summary>Writes to <paramref name="stream"/> (need not be seekable).</summary>
    public GgufWriter(Stream stream, bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        _stream = stream;
        _leaveOpen = leaveOpen;
    }

    /// <summary>Adds a string value.</summary>
    public void AddString(string key, string value) => AddValue(key, (object)value);

    /// <summary>Adds a uint32 value (the type of most GGUF hyperparameters).</summary>
    public void AddUInt32(string key, uint value) => AddValue(key, value);

    /// <summary>Adds an int32 value.</summary>
    public void AddInt32(string key, int value) => AddValue(key, value);

    /// <summary>Adds a float32 value.</summary>
    public void AddFloat32(string key, float value) => AddValue(key, value);

    /// <summary>Adds a bool value.</summary>
    public void AddBool(string key, bool value) => AddValue(key, value);

    /// <summary>Adds an array of strings.</summary>
    public void AddStringArray(string key, IReadOnlyList<string> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        var copy = new string[values.Count];
        for (int i = 0; i < copy.Length; i++)
            copy[i] = values[i];
        AddValue(key, copy);
    }

    /// <summary>Adds an array of float32.</summary>
    public void AddFloat32Array(string key, ReadOnlySpan<float> values) => AddValue(key, values.ToArray());

    /// <summary>Adds an array of int32.</summary>
    public void AddInt32Array(string key, ReadOnlySpan<int> values) => AddValue(key, values.ToArray());

    /// <summary>
    /// Adds a value of any GGUF type, chosen by its CLR type as <see cref="GgufMetadata"/> describes:
    /// <see cref="byte"/> is uint8, ..., <see cref="double"/> is float64, <see cref="string"/> a string, a CLR array of one
    /// of these an array, and an <c>object[]</c> of arrays an array of arrays.
    /// </summary>
    /// <exception cref="ArgumentException">The key was added before, or the value has no GGUF type.</exception>
    /// <exception cref="InvalidOperationException">Tensor data was already written.</exception>
    public void AddValue(string key, object value)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(value);
        ThrowIfHeaderWritten();
        if (!_keys.Add(key))
            throw new ArgumentException($"metadata {key} was already added", nameof(key));
        if (key == "general.alignment")
        {
            if (value is not uint alignment || alignment == 0 || alignment > 1 << 24 || (alignment & (alignment - 1)) != 0)
            {
                _keys.Remove(key);
                throw new ArgumentException("general.alignment must be a uint32 power of two", nameof(value));
            }
            if (_tensors.Count > 0)
            {
                _keys.Remove(key);
                throw new InvalidOperationException("add general.alignment before the first tensor");
            }
            _alignment = (int)alignment;
        }

        var buffer = new MemoryStream();
        try
        {
            WriteString(buffer, key);
            WriteUInt32(buffer, TypeOf(value, nameof(value)));
            WriteValue(buffer, value, depth: 0);
        }
        catch
        {
            _keys.Remove(key);
            throw;
        }
        buffer.WriteTo(_metadata);
        _metadataCount++;
    }

    /// <summary>
    /// Declares a tensor of <paramref name="shape"/> (outermost first, e.g. [rows, cols]) stored as <paramref name="type"/>.
    /// Its data must then be written, in declaration order, with <see cref="WriteTensorData(string, ReadOnlySpan{float})"/>.
    /// </summary>
    /// <exception cref="ArgumentException">A repeated name, an empty or too large shape, or a Q8_0/Q4_0 tensor whose rows are not a multiple of 32.</exception>
    public void AddTensor(string name, ReadOnlySpan<long> shape, GgufTensorType type)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ThrowIfHeaderWritten();
        if (shape.Length is 0 or > 4)
            throw new ArgumentException("a GGUF tensor has 1 to 4 dimensions", nameof(shape));
        if (!GgufFormat.TryGetTypeSize((uint)type, out int blockElements, out int blockBytes, out _))
            throw new ArgumentOutOfRangeException(nameof(type), type, "unsupported tensor type");
        long count = 1;
        foreach (long dim in shape)
        {
            if (dim <= 0)
                throw new ArgumentException("dimensions must be positive", nameof(shape));
            count = checked(count * dim);
        }
        if (count > int.MaxValue)
            throw new ArgumentException($"tensor {name} has {count} elements; at most {int.MaxValue} per tensor can be written", nameof(shape));
        if (shape[^1] % blockElements != 0)
            throw new ArgumentException($"tensor {name}: {type} needs rows that are a multiple of {blockElements} elements; rows have {shape[^1]}", nameof(shape));
        if (!_tensorNames.Add(name))
            throw new ArgumentException($"tensor {name} was already added", nameof(name));

        long bytes = count / blockElements * blockBytes;
        _tensors.Add(new PendingTensor(name, shape.ToArray(), type, _dataSize, bytes));
        _dataSize += Align(bytes);
    }

    /// <summary>
    /// Writes the data of the next declared tensor, <paramref name="name"/>: <paramref name="values"/> row-major,
    /// converted to its type (F16 and BF16 round to nearest even; Q8_0/Q4_0 use llama.cpp's reference quantizers).
    /// The first call writes the header.
    /// </summary>
    /// <exception cref="InvalidOperationException"><paramref name="name"/> is not the next declared tensor.</exception>
    /// <exception cref="ArgumentException">The number of values differs from the tensor's element count.</exception>
    public void WriteTensorData(string name, ReadOnlySpan<float> values)
    {
        PendingTensor tensor = NextTensor(name);
        long count = tensor.ElementCount;
        if (values.Length != count)
            throw new ArgumentException($"tensor {name} has {count} elements; {values.Length} values were given", nameof(values));
        WriteHeaderOnce();

        int cols = (int)tensor.Shape[^1];
        switch (tensor.Type)
        {
            case GgufTensorType.F32:
                WriteBytes(MemoryMarshal.AsBytes(values));
                break;
            case GgufTensorType.F16:
            case GgufTensorType.BF16:
            case GgufTensorType.Q8_0:
            case GgufTensorType.Q4_0:
                // Converted in chunks of whole rows, at most ~64K values at a time.
                int rowsPerChunk = Math.Max(1, 65536 / cols);
                int rowBytes = (int)(tensor.ByteLength / (count / cols));
                byte[] buffer = ArrayPool<byte>.Shared.Rent(rowsPerChunk * rowBytes);
                try
                {
                    for (int start = 0; start < values.Length; start += rowsPerChunk * cols)
                    {
                        int rows = Math.Min(rowsPerChunk, (values.Length - start) / cols);
                        ReadOnlySpan<float> chunk = values.Slice(start, rows * cols);
                        Span<byte> encoded = buffer.AsSpan(0, rows * rowBytes);
                        Encode(chunk, tensor.Type, encoded);
                        WriteBytes(encoded);
                    }
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                }
                break;
        }
        WritePadding(tensor.ByteLength);
        _nextTensor++;
    }

    /// <summary>Writes the next declared tensor's data already encoded in its type (e.g. hand-made Q4_0 blocks).</summary>
    /// <exception cref="InvalidOperationException"><paramref name="name"/> is not the next declared tensor.</exception>
    /// <exception cref="ArgumentException">The length differs from the tensor's size in bytes.</exception>
    public void WriteTensorData(string name, ReadOnlySpan<byte> encoded)
    {
        PendingTensor tensor = NextTensor(name);
        if (encoded.Length != tensor.ByteLength)
            throw new ArgumentException($"tensor {name} takes {tensor.ByteLength} bytes as {tensor.Type}; {encoded.Length} were given", nameof(encoded));
        WriteHeaderOnce();
        WriteBytes(encoded);
        WritePadding(tensor.ByteLength);
        _nextTensor++;
    }

    /// <summary>Completes the file: writes the header if no tensor was written and flushes.</summary>
    /// <exception cref="InvalidOperationException">A declared tensor's data was not written.</exception>
    public void Finish()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_nextTensor != _tensors.Count)
            throw new InvalidOperationException($"tensor {_tensors[_nextTensor].Name} (and {_tensors.Count - _nextTensor - 1} more) were declared but their data was not written");
        WriteHeaderOnce();
        _stream.Flush();
        _finished = true;
    }

    /// <summary>Closes the stream (unless left open). Without <see cref="Finish"/> the file is incomplete.</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        if (!_leaveOpen)
            _stream.Dispose();
    }

    /// <summary>True once <see cref="Finish"/> succeeded.</summary>
    public bool IsFinished => _finished;

    /// <summary>
    /// Writes a complete GGUF model of a LLaMA-family <paramref name="architecture"/>: the hyperparameter keys llama.cpp reads
    /// (from <paramref name="shape"/>, prefixed with the architecture), the tokenizer vocabulary if given, and every tensor,
    /// asked from <paramref name="tensor"/> by its Hugging Face name one at a time (<c>model.embed_tokens.weight</c>,
    /// <c>model.layers.N.self_attn.q_proj.weight</c> (and <c>.bias</c> for qwen2), ..., <c>model.norm.weight</c>, and
    /// <c>lm_head.weight</c> unless the embeddings are tied) as row-major F32. Matrices are stored as
    /// <paramref name="matrixType"/> (F16 for those whose rows are not a multiple of 32 when that is Q8_0/Q4_0, as
    /// llama.cpp does), norms and biases as F32.
    /// </summary>
    /// <param name="path">The file to create.</param>
    /// <param name="shape">The model's hyperparameters.</param>
    /// <param name="tensor">Returns a tensor's values by Hugging Face name.</param>
    /// <param name="matrixType">Type of the 2-D tensors.</param>
    /// <param name="layout">
    /// The RoPE layout of the given q/k rows: <see cref="RopeLayout.RotateHalf"/> (Hugging Face checkpoints) rows are
    /// permuted to the adjacent-pair order GGUF llama files use, as llama.cpp's converter does;
    /// <see cref="RopeLayout.AdjacentPairs"/> (llama2.c) rows are written as given. A qwen2 file keeps Hugging Face's
    /// order (llama.cpp rotates its pairs (j, j + d/2)), so its rows must be <see cref="RopeLayout.RotateHalf"/>.
    /// </param>
    /// <param name="vocabulary">The SentencePiece vocabulary to store as <c>tokenizer.ggml.*</c>, or null for none.</param>
    /// <param name="name">Stored as <c>general.name</c>.</param>
    /// <param name="storeTiedClassifier">
    /// With tied embeddings, also store the embedding as <c>output.weight</c> (some converters do; llama.cpp
    /// needs no copy). Ignored for untied models, which always store <c>lm_head.weight</c> as <c>output.weight</c>.
    /// </param>
    /// <param name="ropeFrequencyFactors">
    /// HeadDim/2 factors stored as the F32 tensor <c>rope_freqs.weight</c>, first, as llama.cpp's converter writes Llama 3's
    /// RoPE scaling (<see cref="Llama3RopeFrequencyFactors"/>); null for none.
    /// </param>
    /// <param name="architecture">
    /// <c>general.architecture</c>: <c>llama</c>, <c>mistral</c> or <c>qwen2</c> (which adds the q/k/v bias vectors
    /// <c>blk.N.attn_q.bias</c>, ..., that llama.cpp's qwen2 loader requires).
    /// </param>
    public static void WriteLlama(string path, LlamaModelShape shape, Func<string, float[]> tensor,
        GgufTensorType matrixType = GgufTensorType.F32, RopeLayout layout = RopeLayout.AdjacentPairs,
        GgufVocabulary? vocabulary = null, string name = "llama", bool storeTiedClassifier = false, float[]? ropeFrequencyFactors = null,
        string architecture = "llama")
    {
        ArgumentNullException.ThrowIfNull(shape);
        if (vocabulary is not null && vocabulary.Tokens.Count != shape.VocabSize)
            throw new ArgumentException($"the vocabulary has {vocabulary.Tokens.Count} tokens; the model has {shape.VocabSize}", nameof(vocabulary));
        if (ropeFrequencyFactors is not null && ropeFrequencyFactors.Length != shape.HeadDim / 2)
            throw new ArgumentException($"{ropeFrequencyFactors.Length} RoPE frequency factors; a head of {shape.HeadDim} has {shape.HeadDim / 2} pairs", nameof(ropeFrequencyFactors));
        WriteLlamaCore(path, shape, tensor, matrixType, layout, vocabulary is null ? null : vocabulary.AddTo, name, storeTiedClassifier, ropeFrequencyFactors, architecture);
    }

    /// <summary>
    /// Llama 3's rope_scaling as llama.cpp's convert_hf_to_gguf.py stores it in <c>rope_freqs.weight</c>: per rotated pair,
    /// the factor its frequency is divided by — 1 for short wavelengths, <paramref name="factor"/> for long ones, the
    /// reciprocal of transformers' blend in between.
    /// </summary>
    public static float[] Llama3RopeFrequencyFactors(int headDim, double ropeTheta, double factor, double lowFreqFactor, double highFreqFactor, int originalMaxPositions)
    {
        double lowFreqWavelength = originalMaxPositions / lowFreqFactor;
        double highFreqWavelength = originalMaxPositions / highFreqFactor;
        var factors = new float[headDim / 2];
        for (int j = 0; j < factors.Length; j++)
        {
            double wavelength = 2 * Math.PI * Math.Pow(ropeTheta, 2.0 * j / headDim);
            if (wavelength < highFreqWavelength)
                factors[j] = 1;
            else if (wavelength > lowFreqWavelength)
                factors[j] = (float)factor;
            else
            {
                double smooth = (originalMaxPositions / wavelength - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
                factors[j] = (float)(1 / ((1 - smooth) / factor + smooth));
            }
        }
        return factors;
    }

    /// <summary>
    /// <see cref="WriteLlama(string, LlamaModelShape, Func{string, float[]}, GgufTensorType, RopeLayout, GgufVocabulary?, string, bool, float[], string)"/>
    /// with a byte-level BPE vocabulary (<c>tokenizer.ggml.model = "gpt2"</c>: Llama 3, Qwen2, SmolLM2).
    /// </summary>
    /// <exception cref="ArgumentException">The vocabulary's token count differs from <see cref="LlamaModelShape.VocabSize"/>.</exception>
    public static void WriteLlama(string path, LlamaModelShape shape, Func<string, float[]> tensor, GgufBpeVocabulary vocabulary,
        GgufTensorType matrixType = GgufTensorType.F32, RopeLayout layout = RopeLayout.AdjacentPairs,
        string name = "llama", bool storeTiedClassifier = false, string architecture = "llama")
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(vocabulary);
        if (vocabulary.Tokens.Count != shape.VocabSize)
            throw new ArgumentException($"the vocabulary has {vocabulary.Tokens.Count} tokens; the model has {shape.VocabSize}", nameof(vocabulary));
        WriteLlamaCore(path, shape, tensor, matrixType, layout, vocabulary.AddTo, name, storeTiedClassifier, ropeFrequencyFactors: null, architecture);
    }

    private static void WriteLlamaCore(string path, LlamaModelShape shape, Func<string, float[]> tensor,
        GgufTensorType matrixType, RopeLayout layout, Action<GgufWriter>? addVocabulary, string name, bool storeTiedClassifier, float[]? ropeFrequencyFactors,
        string architecture)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensor);
        ArgumentNullException.ThrowIfNull(architecture);
        if (Array.IndexOf(LlamaArchitecture.ModelTypes, architecture) < 0)
            throw new ArgumentException($"architecture {architecture}; supported: {string.Join(", ", LlamaArchitecture.ModelTypes)}", nameof(architecture));
        // llama.cpp's converter permutes q/k rows only for the architectures it rotates as adjacent pairs; there is no
        // permutation back, so a qwen2 file needs Hugging Face's rows.
        bool permute = LlamaArchitecture.GgufRotatesAdjacentPairs(architecture);
        if (!permute && layout != RopeLayout.RotateHalf)
            throw new ArgumentException($"a {architecture} file stores q/k rows in Hugging Face's rotate-half order; pass {nameof(RopeLayout.RotateHalf)} rows", nameof(layout));
        bool qkvBias = LlamaArchitecture.HasQkvBias(architecture);
        int qDim = shape.HeadCount * shape.HeadDim, kvDim = shape.KvHeadCount * shape.HeadDim;
        // Tensors in llama.cpp's order, named by the architecture table; q/k rows are permuted for adjacent-pair RoPE.
        long[] ShapeOf(LlamaTensor t) => t switch
        {
            LlamaTensor.TokenEmbedding or LlamaTensor.Classifier => [shape.VocabSize, shape.HiddenSize],
            LlamaTensor.FinalNorm or LlamaTensor.AttentionNorm or LlamaTensor.FeedForwardNorm => [shape.HiddenSize],
            LlamaTensor.Query => [qDim, shape.HiddenSize],
            LlamaTensor.Key or LlamaTensor.Value => [kvDim, shape.HiddenSize],
            LlamaTensor.AttentionOutput => [shape.HiddenSize, qDim],
            LlamaTensor.Gate or LlamaTensor.Up => [shape.IntermediateSize, shape.HiddenSize],
            _ => [shape.HiddenSize, shape.IntermediateSize],
        };
        // Biases follow their weights, as in Hugging Face's sorted checkpoints (llama.cpp does not care about the order).
        var plan = new List<(string Gguf, string Hf, long[] Shape, int PermuteHeads)>
        {
            (LlamaArchitecture.GgufName(LlamaTensor.TokenEmbedding), LlamaArchitecture.HuggingFaceName(LlamaTensor.TokenEmbedding), ShapeOf(LlamaTensor.TokenEmbedding), 0),
        };
        for (int l = 0; l < shape.LayerCount; l++)
        {
            foreach (LlamaTensor t in LlamaArchitecture.LayerTensors)
            {
                int permuteHeads = !permute ? 0 : t == LlamaTensor.Query ? shape.HeadCount : t == LlamaTensor.Key ? shape.KvHeadCount : 0;
                plan.Add((LlamaArchitecture.GgufName(t, l), LlamaArchitecture.HuggingFaceName(t, l), ShapeOf(t), permuteHeads));
                if (qkvBias && t is LlamaTensor.Query or LlamaTensor.Key or LlamaTensor.Value)
                    plan.Add((LlamaArchitecture.GgufName(t, l, bias: true), LlamaArchitecture.HuggingFaceName(t, l, bias: true), [ShapeOf(t)[0]], 0));
            }
        }
        plan.Add((LlamaArchitecture.GgufName(LlamaTensor.FinalNorm), LlamaArchitecture.HuggingFaceName(LlamaTensor.FinalNorm), ShapeOf(LlamaTensor.FinalNorm), 0));
        if (!shape.TiedEmbeddings)
            plan.Add((LlamaArchitecture.GgufName(LlamaTensor.Classifier), LlamaArchitecture.HuggingFaceName(LlamaTensor.Classifier), ShapeOf(LlamaTensor.Classifier), 0));
        else if (storeTiedClassifier)
            plan.Add((LlamaArchitecture.GgufName(LlamaTensor.Classifier), LlamaArchitecture.HuggingFaceName(LlamaTensor.TokenEmbedding), ShapeOf(LlamaTensor.Classifier), 0));

        using var writer = new GgufWriter(path);
        writer.AddString("general.architecture", architecture);
        writer.AddString("general.name", name);
        writer.AddUInt32("general.file_type", matrixType switch
        {
            GgufTensorType.F32 => 0u,   // LLAMA_FTYPE_ALL_F32
            GgufTensorType.F16 => 1u,   // LLAMA_FTYPE_MOSTLY_F16
            GgufTensorType.Q4_0 => 2u,  // LLAMA_FTYPE_MOSTLY_Q4_0
            GgufTensorType.Q8_0 => 7u,  // LLAMA_FTYPE_MOSTLY_Q8_0
            GgufTensorType.BF16 => 32u, // LLAMA_FTYPE_MOSTLY_BF16
            _ => throw new ArgumentOutOfRangeException(nameof(matrixType), matrixType, "unsupported tensor type"),
        });
        writer.AddUInt32("general.alignment", DefaultAlignment);
        if (matrixType is GgufTensorType.Q8_0 or GgufTensorType.Q4_0)
            writer.AddUInt32("general.quantization_version", 2);
        // The keys every LLaMA-family loader of llama.cpp reads, under the architecture's prefix.
        string a = architecture + ".";
        writer.AddUInt32(a + "context_length", (uint)shape.MaxContext);
        writer.AddUInt32(a + "embedding_length", (uint)shape.HiddenSize);
        writer.AddUInt32(a + "block_count", (uint)shape.LayerCount);
        writer.AddUInt32(a + "feed_forward_length", (uint)shape.IntermediateSize);
        writer.AddUInt32(a + "attention.head_count", (uint)shape.HeadCount);
        writer.AddUInt32(a + "attention.head_count_kv", (uint)shape.KvHeadCount);
        writer.AddFloat32(a + "attention.layer_norm_rms_epsilon", shape.RmsNormEps);
        writer.AddUInt32(a + "rope.dimension_count", (uint)shape.HeadDim);
        writer.AddFloat32(a + "rope.freq_base", shape.RopeTheta);
        writer.AddUInt32(a + "vocab_size", (uint)shape.VocabSize);
        addVocabulary?.Invoke(writer);

        const string ropeFreqs = "rope_freqs.weight";
        if (ropeFrequencyFactors is not null)
            writer.AddTensor(ropeFreqs, [ropeFrequencyFactors.Length], GgufTensorType.F32);
        foreach ((string gguf, _, long[] tensorShape, _) in plan)
        {
            GgufTensorType type = tensorShape.Length == 1 ? GgufTensorType.F32
                : matrixType is GgufTensorType.Q8_0 or GgufTensorType.Q4_0 && tensorShape[1] % BlockQuantization.BlockSize != 0 ? GgufTensorType.F16
                : matrixType;
            writer.AddTensor(gguf, tensorShape, type);
        }
        if (ropeFrequencyFactors is not null)
            writer.WriteTensorData(ropeFreqs, ropeFrequencyFactors);
        foreach ((string gguf, string hf, long[] tensorShape, int permuteHeads) in plan)
        {
            float[] values = tensor(hf) ?? throw new ArgumentException($"no values for tensor {hf}", nameof(tensor));
            if (permuteHeads > 0 && layout == RopeLayout.RotateHalf)
                values = RotateHalfToAdjacentPairs(values, permuteHeads, (int)tensorShape[0], (int)tensorShape[1]);
            writer.WriteTensorData(gguf, values);
        }
        writer.Finish();
    }

    /// <summary><see cref="WriteLlama(string, LlamaModelShape, Func{string, float[]}, GgufTensorType, RopeLayout, GgufVocabulary?, string, bool, float[], string)"/> from a dictionary of Hugging Face names.</summary>
    public static void WriteLlama(string path, LlamaModelShape shape, IReadOnlyDictionary<string, float[]> tensors,
        GgufTensorType matrixType = GgufTensorType.F32, RopeLayout layout = RopeLayout.AdjacentPairs,
        GgufVocabulary? vocabulary = null, string name = "llama", bool storeTiedClassifier = false)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        WriteLlama(path, shape, hf => tensors.TryGetValue(hf, out float[]? values) ? values : throw new ArgumentException($"tensor {hf} is missing", nameof(tensors)),
            matrixType, layout, vocabulary, name, storeTiedClassifier);
    }

    /// <summary>
    /// Reorders q/k projection rows from Hugging Face's rotate-half order to adjacent pairs: within each head
    /// of d rows, row i·d/2 + j (half i, pair j) moves to row 2j + i. llama.cpp's <c>convert_hf_to_gguf.py</c> permute.
    /// </summary>
    public static float[] RotateHalfToAdjacentPairs(ReadOnlySpan<float> rows, int heads, int rowCount, int cols)
    {
        if (heads <= 0 || rowCount % heads != 0 || rowCount / heads % 2 != 0 || (long)rowCount * cols != rows.Length)
            throw new ArgumentException($"{rowCount}×{cols} rows cannot be split into {heads} heads of an even size");
        int headDim = rowCount / heads, half = headDim / 2;
        var result = new float[rows.Length];
        for (int h = 0; h < heads; h++)
        {
            for (int i = 0; i < 2; i++)
            {
                for (int j = 0; j < half; j++)
                {
                    int from = h * headDim + i * half + j, to = h * headDim + 2 * j + i;
                    rows.Slice(from * cols, cols).CopyTo(result.AsSpan(to * cols, cols));
                }
            }
        }
        return result;
    }

    // ---- encoding ----

    private static void Encode(ReadOnlySpan<float> values, GgufTensorType type, Span<byte> destination)
    {
        switch (type)
        {
            case GgufTensorType.F16:
                TensorPrimitives.ConvertToHalf(values, MemoryMarshal.Cast<byte, Half>(destination));
                break;
            case GgufTensorType.BF16:
                Span<ushort> bf16 = MemoryMarshal.Cast<byte, ushort>(destination);
                for (int i = 0; i < values.Length; i++)
                    bf16[i] = ToBFloat16(values[i]);
                break;
            case GgufTensorType.Q8_0:
                BlockQuantization.QuantizeQ8_0(values, destination);
                break;
            case GgufTensorType.Q4_0:
                BlockQuantization.QuantizeQ4_0(values, destination);
                break;
        }
    }

    /// <summary>ggml's <c>ggml_compute_fp32_to_bf16</c>: round to nearest even, NaN kept quiet.</summary>
    internal static ushort ToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if ((bits & 0x7fffffff) > 0x7f800000)
            return (ushort)((bits >> 16) | 64);
        return (ushort)((bits + (0x7fff + ((bits >> 16) & 1))) >> 16);
    }

    private PendingTensor NextTensor(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_nextTensor >= _tensors.Count)
            throw new InvalidOperationException($"tensor {name} was not declared with AddTensor, or its data was already written");
        PendingTensor next = _tensors[_nextTensor];
        if (next.Name != name)
            throw new InvalidOperationException($"the next tensor to write is {next.Name}, not {name}: data must be written in the order the tensors were added");
        return next;
    }

    private void ThrowIfHeaderWritten()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_headerWritten)
            throw new InvalidOperationException("metadata and tensors must be added before the first tensor data is written");
    }

    private void WriteHeaderOnce()
    {
        if (_headerWritten)
            return;
        _headerWritten = true;
        var header = new MemoryStream();
        WriteUInt32(header, GgufFormat.Magic);
        WriteUInt32(header, 3);
        WriteUInt64(header, (ulong)_tensors.Count);
        WriteUInt64(header, (ulong)_metadataCount);
        _metadata.WriteTo(header);
        foreach (PendingTensor tensor in _tensors)
        {
            WriteString(header, tensor.Name);
            WriteUInt32(header, (uint)tensor.Shape.Length);
            for (int d = tensor.Shape.Length - 1; d >= 0; d--)
                WriteUInt64(header, (ulong)tensor.Shape[d]); // innermost first
            WriteUInt32(header, (uint)tensor.Type);
            WriteUInt64(header, (ulong)tensor.Offset);
        }
        WriteBytes(header.GetBuffer().AsSpan(0, (int)header.Length));
        WritePadding(_position);
    }

    private void WriteBytes(ReadOnlySpan<byte> bytes)
    {
        _stream.Write(bytes);
        _position += bytes.Length;
    }

    private static readonly byte[] Zeros = new byte[4096];

    private void WritePadding(long length)
    {
        long padding = Align(length) - length;
        while (padding > 0)
        {
            int n = (int)Math.Min(padding, Zeros.Length);
            WriteBytes(Zeros.AsSpan(0, n));
            padding -= n;
        }
    }

    private long Align(long length) => (length + _alignment - 1) / _alignment * _alignment;

    private static uint TypeOf(object value, string paramName) => value switch
    {
        byte => 0, sbyte => 1, ushort => 2, short => 3, uint => 4, int => 5, float => 6, bool => 7, string => 8,
        ulong => 10, long => 11, double => 12,
        _ when GgufMetadata.ArrayElementTypeOf(value.GetType()) is not null => 9,
        _ => throw new ArgumentException($"{value.GetType().Name} has no GGUF type", paramName),
    };

    private static void WriteValue(MemoryStream s, object value, int depth)
    {
        if (GgufMetadata.ArrayElementTypeOf(value.GetType()) is uint elementType)
        {
            WriteArray(s, elementType, value, depth);
            return;
        }
        switch (value)
        {
            case byte v: s.WriteByte(v); break;
            case sbyte v: s.WriteByte((byte)v); break;
            case ushort v: WriteScalar(s, v); break;
            case short v: WriteScalar(s, v); break;
            case uint v: WriteScalar(s, v); break;
            case int v: WriteScalar(s, v); break;
            case float v: WriteScalar(s, v); break;
            case bool v: s.WriteByte(v ? (byte)1 : (byte)0); break;
            case string v: WriteString(s, v); break;
            case ulong v: WriteScalar(s, v); break;
            case long v: WriteScalar(s, v); break;
            case double v: WriteScalar(s, v); break;
            default: throw new ArgumentException($"{value.GetType().Name} has no GGUF type");
        }
    }

    /// <summary>An array value: element type, count, then the elements (each array of an array of arrays with its own type and count).</summary>
    private static void WriteArray(MemoryStream s, uint elementType, object value, int depth)
    {
        switch (elementType)
        {
            case 8:
                var strings = (string[])value;
                WriteArrayHeader(s, 8, strings.Length);
                foreach (string item in strings)
                    WriteString(s, item ?? throw new ArgumentException("arrays of strings cannot hold null"));
                break;
            case 7:
                var bools = (bool[])value;
                WriteArrayHeader(s, 7, bools.Length);
                foreach (bool item in bools)
                    s.WriteByte(item ? (byte)1 : (byte)0);
                break;
            case 9:
                if (depth >= 32)
                    throw new ArgumentException("arrays are nested too deeply"); // readers accept far less (this library: 8)
                var arrays = (object[])value;
                WriteArrayHeader(s, 9, arrays.Length);
                foreach (object item in arrays)
                {
                    if (item is null || GgufMetadata.ArrayElementTypeOf(item.GetType()) is not uint inner)
                        throw new ArgumentException("an object[] value must hold arrays");
                    WriteArray(s, inner, item, depth + 1);
                }
                break;
            default:
                // Scalars: little-endian, as they are in memory on the machines this runtime supports.
                var array = (Array)value;
                WriteArrayHeader(s, elementType, array.Length);
                int size = elementType switch { 0 or 1 => 1, 2 or 3 => 2, 4 or 5 or 6 => 4, _ => 8 };
                var bytes = new byte[array.Length * size];
                Buffer.BlockCopy(array, 0, bytes, 0, bytes.Length);
                s.Write(bytes);
                break;
        }
    }

    private static void WriteArrayHeader(MemoryStream s, uint elementType, int count)
    {
        WriteUInt32(s, elementType);
        WriteUInt64(s, (ulong)count);
    }

    private static void WriteScalar<T>(MemoryStream s, T value) where T : unmanaged =>
        s.Write(MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in value)));

    private static void WriteString(MemoryStream s, string value)
    {
        byte[] bytes = Utf8.GetBytes(value);
        WriteUInt64(s, (ulong)bytes.Length);
        s.Write(bytes);
    }

    private static void WriteUInt32(MemoryStream s, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        s.Write(b);
    }

    private static void WriteUInt64(MemoryStream s, ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        s.Write(b);
    }

    private sealed record PendingTensor(string Name, long[] Shape, GgufTensorType Type, long Offset, long ByteLength)
    {
        public long ElementCount
        {
            get
            {
                long count = 1;
                foreach (long dim in Shape)
                    count *= dim;
                return count;
            }
        }
    }
}

/// <summary>
/// A SentencePiece vocabulary for the <c>tokenizer.ggml.*</c> keys of a GGUF file (llama.cpp's "llama"
/// tokenizer model): pieces, scores and token types (1 normal, 2 unknown, 3 control, 4 user-defined,
/// 5 unused, 6 byte), plus the special token ids.
/// </summary>
/// <param name="Tokens">The pieces, in id order (<c>▁</c> for a space).</param>
/// <param name="Scores">One score per piece (merge priority).</param>
/// <param name="TokenTypes">One type per piece.</param>
/// <param name="BosTokenId">Beginning-of-sequence id.</param>
/// <param name="EosTokenId">End-of-sequence id.</param>
/// <param name="UnknownTokenId">Unknown-piece id.</param>
public sealed record GgufVocabulary(
    IReadOnlyList<string> Tokens,
    IReadOnlyList<float> Scores,
    IReadOnlyList<int> TokenTypes,
    int BosTokenId = 1,
    int EosTokenId = 2,
    int UnknownTokenId = 0)
{
    /// <summary>Whether encoding adds BOS (<c>tokenizer.ggml.add_bos_token</c>).</summary>
    public bool AddBos { get; init; } = true;

    /// <summary>Whether encoding adds EOS (<c>tokenizer.ggml.add_eos_token</c>).</summary>
    public bool AddEos { get; init; }

    /// <summary>Adds the <c>tokenizer.ggml.*</c> keys of this vocabulary to <paramref name="writer"/>.</summary>
    /// <exception cref="ArgumentException">The scores or token types do not match the tokens in number.</exception>
    public void AddTo(GgufWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        if (Scores.Count != Tokens.Count || TokenTypes.Count != Tokens.Count)
            throw new ArgumentException($"the vocabulary has {Tokens.Count} tokens but {Scores.Count} scores and {TokenTypes.Count} token types");
        var scores = new float[Scores.Count];
        for (int i = 0; i < scores.Length; i++)
            scores[i] = Scores[i];
        var types = new int[TokenTypes.Count];
        for (int i = 0; i < types.Length; i++)
            types[i] = TokenTypes[i];
        writer.AddString("tokenizer.ggml.model", "llama");
        writer.AddStringArray("tokenizer.ggml.tokens", Tokens);
        writer.AddFloat32Array("tokenizer.ggml.scores", scores);
        writer.AddInt32Array("tokenizer.ggml.token_type", types);
        writer.AddUInt32("tokenizer.ggml.bos_token_id", (uint)BosTokenId);
        writer.AddUInt32("tokenizer.ggml.eos_token_id", (uint)EosTokenId);
        writer.AddUInt32("tokenizer.ggml.unknown_token_id", (uint)UnknownTokenId);
        writer.AddBool("tokenizer.ggml.add_bos_token", AddBos);
        writer.AddBool("tokenizer.ggml.add_eos_token", AddEos);
    }
}

/// <summary>
/// A byte-level BPE vocabulary for the <c>tokenizer.ggml.*</c> keys of a GGUF file (llama.cpp's "gpt2"
/// tokenizer model), as llama.cpp's <c>convert_hf_to_gguf.py</c> writes it: the tokens in id order (byte
/// characters, <c>Ġ</c> for a space; added tokens as their text), their types (1 normal, 3 control for
/// special added tokens, 4 user-defined for the other added tokens, 5 unused for the <c>[PAD…]</c> fillers
/// of a padded vocabulary), the merges as <c>"a b"</c>, the pre-tokenizer's name, BOS/EOS ids,
/// <c>add_bos_token</c> and <c>clean_spaces</c>.
/// </summary>
public sealed class GgufBpeVocabulary
{
    private GgufBpeVocabulary(string[] tokens, int[] tokenTypes, string[] merges, string preTokenizer)
    {
        Tokens = tokens;
        TokenTypes = tokenTypes;
        Merges = merges;
        PreTokenizer = preTokenizer;
    }

    /// <summary>The tokens, in id order.</summary>
    public IReadOnlyList<string> Tokens { get; }

    /// <summary>One llama.cpp token type per token.</summary>
    public IReadOnlyList<int> TokenTypes { get; }

    /// <summary>The merges, in rank order, as <c>"left right"</c>.</summary>
    public IReadOnlyList<string> Merges { get; }

    /// <summary>The llama.cpp pre-tokenizer name (<c>tokenizer.ggml.pre</c>): <c>llama-bpe</c>, <c>qwen2</c>, <c>smollm</c>, <c>gpt2</c>.</summary>
    public string PreTokenizer { get; }

    /// <summary>BOS id, or null when the tokenizer has none.</summary>
    public int? BosTokenId { get; init; }

    /// <summary>EOS id, or null.</summary>
    public int? EosTokenId { get; init; }

    /// <summary>Whether encoding adds BOS.</summary>
    public bool AddBos { get; init; }

    /// <summary>Whether decoding cleans up spaces before punctuation (transformers' <c>clean_up_tokenization_spaces</c>).</summary>
    public bool CleanSpaces { get; init; }

    /// <summary>
    /// The vocabulary of a byte-level BPE <paramref name="tokenizer"/> (as <see cref="LlamaTokenizers.Load"/> returns it),
    /// padded with unused <c>[PADn]</c> tokens to <paramref name="vocabSize"/> when the model's embedding has more rows
    /// than the tokenizer has ids (Qwen's do).
    /// </summary>
    /// <exception cref="ArgumentException">The tokenizer's pre-tokenizer has no llama.cpp name and none was given, or it has more ids than <paramref name="vocabSize"/>.</exception>
    public static GgufBpeVocabulary FromTokenizer(ByteLevelBpeTokenizer tokenizer, int? vocabSize = null, string? preTokenizer = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ByteLevelBpeDefinition definition = tokenizer.Definition;
        string pre = preTokenizer ?? ByteLevelPreTokenizers.GgufNameOf(definition.SplitPatterns, definition.IgnoreMerges)
            ?? throw new ArgumentException($"{definition.Source}: its pre-tokenizer ({string.Join(" then ", definition.SplitPatterns)}) is none that llama.cpp names; pass the name", nameof(preTokenizer));
        int count = vocabSize ?? definition.Tokens.Length;
        if (count < definition.Tokens.Length)
            throw new ArgumentException($"the tokenizer has {definition.Tokens.Length} ids; the vocabulary size {count} is smaller", nameof(vocabSize));
        var tokens = new string[count];
        var types = new int[count];
        definition.Tokens.CopyTo(tokens, 0);
        types.AsSpan(0, definition.Tokens.Length).Fill(1);
        foreach (ByteLevelAddedToken added in definition.AddedTokens)
            types[added.Id] = added.Special ? 3 : 4;
        for (int id = definition.Tokens.Length; id < count; id++)
        {
            tokens[id] = $"[PAD{id}]";
            types[id] = 5;
        }
        var merges = new string[definition.MergeLeft.Length];
        for (int rank = 0; rank < merges.Length; rank++)
            merges[rank] = definition.Tokens[definition.MergeLeft[rank]] + " " + definition.Tokens[definition.MergeRight[rank]];
        return new GgufBpeVocabulary(tokens, types, merges, pre)
        {
            BosTokenId = definition.BosId,
            EosTokenId = definition.EosId,
            AddBos = definition.AddBos,
            CleanSpaces = definition.CleanUpTokenizationSpaces,
        };
    }

    /// <summary>Adds the <c>tokenizer.ggml.*</c> keys of this vocabulary to <paramref name="writer"/>.</summary>
    public void AddTo(GgufWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        var types = new int[TokenTypes.Count];
        for (int i = 0; i < types.Length; i++)
            types[i] = TokenTypes[i];
        writer.AddString("tokenizer.ggml.model", "gpt2");
        writer.AddString("tokenizer.ggml.pre", PreTokenizer);
        writer.AddStringArray("tokenizer.ggml.tokens", Tokens);
        writer.AddInt32Array("tokenizer.ggml.token_type", types);
        writer.AddStringArray("tokenizer.ggml.merges", Merges);
        if (BosTokenId is int bos)
            writer.AddUInt32("tokenizer.ggml.bos_token_id", (uint)bos);
        if (EosTokenId is int eos)
            writer.AddUInt32("tokenizer.ggml.eos_token_id", (uint)eos);
        writer.AddBool("tokenizer.ggml.add_bos_token", AddBos);
        writer.AddBool("tokenizer.ggml.add_eos_token", false);
        writer.AddBool("tokenizer.ggml.clean_spaces", CleanSpaces);
    }
}
