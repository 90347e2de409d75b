using System;
using System.Buffers.Binary;
using System.Collections.Generic;

namespace Llama.Compiled;

/// <summary>
/// Reads llama2.c's legacy (version 0) F32 checkpoints, the <c>.bin</c> files <c>run.c</c> loads: a header of
/// seven int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative vocab_size
/// means the classifier is stored separately), then the weights back to back as F32. Every tensor is
/// exposed as a view under the Hugging Face name the generated code asks for; a layer's slice of the
/// stacked [n_layers, ...] arrays is its own view. The q/k rows are in llama2.c's order (RoPE on adjacent pairs).
/// </summary>
internal static class Llama2cFormat
{
    public const int HeaderBytes = 7 * sizeof(int);

    /// <summary>"ak42", the magic number of llama2.c's version 1 and 2 exports.</summary>
    private const int VersionedMagic = 0x616b3432;

    /// <summary>The header, as stored.</summary>
    public readonly record struct Header(int Dim, int HiddenDim, int LayerCount, int HeadCount, int KvHeadCount, int VocabSize, int SeqLen)
    {
        /// <summary>True when the classifier is the token embedding (vocab_size stored positive).</summary>
        public bool SharedClassifier => VocabSize > 0;

        public int Vocab => Math.Abs(VocabSize);

        public int HeadSize => Dim / HeadCount;

        public int KvDim => Dim / HeadCount * KvHeadCount;
    }

    public static unsafe (Header Header, List<TensorInfo> Tensors) Read(MappedFile file)
    {
        if (file.Length < HeaderBytes)
            throw new ModelFormatException($"{file.Path}: the file is {file.Length} bytes long; a llama2.c checkpoint starts with a {HeaderBytes}-byte header");
        byte* raw = file.Pointer;
        int Field(int i) => BinaryPrimitives.ReadInt32LittleEndian(new ReadOnlySpan<byte>(raw + 4 * i, 4));
        if (Field(0) == VersionedMagic)
            throw new ModelFormatException($"{file.Path}: a llama2.c version 1/2 export (magic \"ak42\"); only the legacy version 0 F32 checkpoint is supported");
        var header = new Header(Field(0), Field(1), Field(2), Field(3), Field(4), Field(5), Field(6));

        string Describe() => $"dim={header.Dim}, hidden_dim={header.HiddenDim}, n_layers={header.LayerCount}, n_heads={header.HeadCount}, n_kv_heads={header.KvHeadCount}, vocab_size={header.VocabSize}, seq_len={header.SeqLen}";
        if (header.Dim <= 0 || header.HiddenDim <= 0 || header.LayerCount <= 0 || header.HeadCount <= 0 || header.KvHeadCount <= 0
            || header.SeqLen <= 0 || header.VocabSize == 0 || header.VocabSize == int.MinValue)
            throw new ModelFormatException($"{file.Path}: not a llama2.c checkpoint: the header ({Describe()}) has values that must be positive");
        if (header.Dim % header.HeadCount != 0 || header.HeadCount % header.KvHeadCount != 0)
            throw new ModelFormatException($"{file.Path}: not a llama2.c checkpoint: in the header ({Describe()}) n_heads must divide dim and n_kv_heads must divide n_heads");

        long dim = header.Dim, hidden = header.HiddenDim, layers = header.LayerCount, vocab = header.Vocab;
        long kvDim = header.KvDim, headSize = header.HeadSize;
        // The size the header implies, checked against the file before any view is made: a corrupted
        // header must not make the reader create millions of views.
        long expected;
        try
        {
            long perLayer = checked(dim + dim * dim + 2 * kvDim * dim + dim * dim + dim + 3 * hidden * dim);
            long floats = checked(vocab * dim + layers * perLayer + dim
                + 2 * (header.SeqLen * headSize / 2)      // freq_cis_real/imag, RoPE tables run.c skips
                + (header.SharedClassifier ? 0 : vocab * dim));
            expected = checked(HeaderBytes + floats * sizeof(float));
        }
        catch (OverflowException)
        {
            throw new ModelFormatException($"{file.Path}: the header ({Describe()}) describes more data than any file can hold: not a llama2.c checkpoint");
        }
        if (expected != file.Length)
            throw new ModelFormatException($"{file.Path}: the header ({Describe()}) describes a {expected}-byte file, but the file is {file.Length} bytes: it is truncated, corrupted or not a llama2.c legacy checkpoint");

        var tensors = new List<TensorInfo>();
        long offset = HeaderBytes; // in bytes; every sum below is at most the file length checked above

        // run.c's arrays in file order (the architecture table's Llama2cOrder): one F32 array, or n_layers consecutive
        // ones (llama2.c stacks each weight of all layers); the RoPE tables (freq_cis) sit before the classifier.
        foreach (LlamaTensor tensor in LlamaArchitecture.Llama2cOrder)
        {
            if (tensor == LlamaTensor.Classifier)
            {
                offset += 2 * (header.SeqLen * headSize / 2) * sizeof(float);
                if (header.SharedClassifier)
                    continue;
            }
            long[] shape = tensor switch
            {
                LlamaTensor.TokenEmbedding or LlamaTensor.Classifier => [vocab, dim],
                LlamaTensor.AttentionNorm or LlamaTensor.FeedForwardNorm or LlamaTensor.FinalNorm => [dim],
                LlamaTensor.Query or LlamaTensor.AttentionOutput => [dim, dim],
                LlamaTensor.Key or LlamaTensor.Value => [kvDim, dim],
                LlamaTensor.Gate or LlamaTensor.Up => [hidden, dim],
                _ => [dim, hidden],
            };
            long bytes = sizeof(float);
            foreach (long d in shape)
                bytes *= d;
            bool perLayer = LlamaArchitecture.IsPerLayer(tensor);
            for (int layer = 0; layer < (perLayer ? header.LayerCount : 1); layer++)
            {
                tensors.Add(new TensorInfo(LlamaArchitecture.HuggingFaceName(tensor, layer), "F32", shape, file, offset, bytes));
                offset += bytes;
            }
        }
        return (header, tensors);
    }

    /// <summary>Checks the header against the compiled shape; the message names the header field.</summary>
    public static void CheckHyperparameters(string source, Header header, LlamaModelShape shape)
    {
        Hyperparameters.Check(source, "dim", shape.HiddenSize, header.Dim);
        Hyperparameters.Check(source, "hidden_dim", shape.IntermediateSize, header.HiddenDim);
        Hyperparameters.Check(source, "n_layers", shape.LayerCount, header.LayerCount);
        Hyperparameters.Check(source, "n_heads", shape.HeadCount, header.HeadCount);
        Hyperparameters.Check(source, "n_kv_heads", shape.KvHeadCount, header.KvHeadCount);
        Hyperparameters.Check(source, "head_size (dim / n_heads)", shape.HeadDim, header.HeadSize);
        Hyperparameters.Check(source, "vocab_size", shape.VocabSize, header.Vocab);
        if (shape.TiedEmbeddings != header.SharedClassifier)
        {
            throw new ModelFormatException(shape.TiedEmbeddings
                ? $"{source}: vocab_size: compiled model expects a shared classifier (tied embeddings, vocab_size stored positive), file has {header.VocabSize} (a separate classifier)"
                : $"{source}: vocab_size: compiled model expects a separate classifier (vocab_size stored negative), file has {header.VocabSize} (shared with the token embedding)");
        }
        Hyperparameters.CheckContext(source, "seq_len", shape.MaxContext, header.SeqLen);
    }
}
