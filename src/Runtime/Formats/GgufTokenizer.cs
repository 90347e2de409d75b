using System;
using System.IO;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace Llama.Compiled;

/// <summary>
/// The tokenizer stored in a GGUF file's metadata: byte-level BPE (<c>tokenizer.ggml.model = "gpt2"</c>,
/// a <see cref="ByteLevelBpeTokenizer"/>) or SentencePiece (<c>tokenizer.ggml.model = "llama"</c>):
/// the vocabulary is turned back into the SentencePiece <c>ModelProto</c> a Llama <c>tokenizer.model</c> holds
/// and given to Microsoft.ML.Tokenizers' <see cref="LlamaTokenizer"/>.
/// </summary>
/// <remarks>
/// The rebuilt model mirrors Llama 2's <c>tokenizer.model</c>: a BPE model with byte fallback when the
/// vocabulary has byte pieces, an identity normalizer that adds a dummy prefix (unless
/// <c>tokenizer.ggml.add_space_prefix</c> is false), escapes spaces as <c>▁</c> and keeps runs of spaces
/// (unless <c>tokenizer.ggml.remove_extra_whitespaces</c> is true) — llama.cpp's behaviour for this
/// tokenizer model. BOS/EOS are added as <c>tokenizer.ggml.add_bos_token</c>/<c>add_eos_token</c> say (default: BOS only).
/// </remarks>
public static class GgufTokenizer
{
    /// <summary>Reads the tokenizer of the GGUF file at <paramref name="ggufPath"/> (only its metadata is read).</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ModelFormatException">The file is not a valid GGUF file or has no SentencePiece ("llama") vocabulary.</exception>
    public static Tokenizer Load(string ggufPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(ggufPath);
        string path = Path.GetFullPath(ggufPath);
        if (!File.Exists(path))
            throw new FileNotFoundException($"GGUF file not found: {path}", path);
        GgufMetadata metadata;
        using (MappedFile file = MappedFile.Open(path))
            metadata = GgufFormat.Read(file, metadataOnly: true).Metadata;
        return Create(metadata);
    }

    /// <summary>Builds the tokenizer from already read metadata (e.g. <see cref="ModelWeights.Metadata"/>).</summary>
    /// <exception cref="ModelFormatException">The metadata has no valid SentencePiece ("llama") vocabulary.</exception>
    public static Tokenizer Create(GgufMetadata metadata)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        if (metadata.GetString("tokenizer.ggml.model") == "gpt2")
            return new ByteLevelBpeTokenizer(ReadByteLevelBpe(metadata));
        byte[] model = BuildModelProto(metadata);
        bool addBos = metadata.GetBool("tokenizer.ggml.add_bos_token") ?? true;
        bool addEos = metadata.GetBool("tokenizer.ggml.add_eos_token") ?? false;
        try
        {
            return LlamaTokenizer.Create(new MemoryStream(model, writable: false), addBos, addEos);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // E.g. two pieces with the same text: the tokenizer's dictionary rejects the vocabulary.
            throw new ModelFormatException($"{metadata.Source}: the tokenizer vocabulary is not valid: {e.Message}", e);
        }
    }

    /// <summary>
    /// The serialized SentencePiece <c>ModelProto</c>: <c>pieces</c> (1), <c>trainer_spec</c> (2), <c>normalizer_spec</c> (3),
    /// with the field numbers of sentencepiece_model.proto.
    /// </summary>
    internal static byte[] BuildModelProto(GgufMetadata metadata)
    {
        string source = metadata.Source;
        string? model = metadata.GetString("tokenizer.ggml.model");
        if (model is null)
            throw new ModelFormatException($"{source}: the GGUF file has no tokenizer (tokenizer.ggml.model is missing)");
        if (model != "llama")
            throw new ModelFormatException($"{source}: tokenizer.ggml.model is \"{model}\"; only \"llama\" (SentencePiece) and \"gpt2\" (byte-level BPE) tokenizers are supported");
        string[] tokens = metadata.GetStringArray("tokenizer.ggml.tokens")
            ?? throw new ModelFormatException($"{source}: the GGUF file has no tokenizer.ggml.tokens");
        if (tokens.Length == 0)
            throw new ModelFormatException($"{source}: tokenizer.ggml.tokens is empty");
        float[]? scores = metadata.GetFloat32Array("tokenizer.ggml.scores");
        int[]? types = metadata.GetInt32Array("tokenizer.ggml.token_type");
        if (scores is not null && scores.Length != tokens.Length)
            throw new ModelFormatException($"{source}: tokenizer.ggml.scores has {scores.Length} values for {tokens.Length} tokens");
        if (types is not null && types.Length != tokens.Length)
            throw new ModelFormatException($"{source}: tokenizer.ggml.token_type has {types.Length} values for {tokens.Length} tokens");

        int unk = TokenId(metadata, "tokenizer.ggml.unknown_token_id", 0, tokens.Length);
        int bos = TokenId(metadata, "tokenizer.ggml.bos_token_id", 1, tokens.Length);
        int eos = TokenId(metadata, "tokenizer.ggml.eos_token_id", 2, tokens.Length);
        int pad = metadata.ContainsKey("tokenizer.ggml.padding_token_id") ? TokenId(metadata, "tokenizer.ggml.padding_token_id", -1, tokens.Length) : -1;
        bool addDummyPrefix = metadata.GetBool("tokenizer.ggml.add_space_prefix") ?? true;
        bool removeExtraWhitespaces = metadata.GetBool("tokenizer.ggml.remove_extra_whitespaces") ?? false;

        var proto = new ProtoWriter();
        bool hasBytes = false;
        var piece = new ProtoWriter();
        for (int i = 0; i < tokens.Length; i++)
        {
            int type = types?[i] ?? 1;
            if (type is < 1 or > 6)
                type = 1; // llama.cpp's UNDEFINED (0) and anything unknown: a normal piece
            hasBytes |= type == 6;
            piece.Clear();
            piece.String(1, tokens[i]);
            piece.Float(2, scores?[i] ?? 0f);
            if (type != 1)
                piece.Varint(3, (ulong)type); // NORMAL is the default and, as in SentencePiece's files, omitted
            proto.Message(1, piece);
        }

        var trainer = new ProtoWriter();
        trainer.Varint(3, 2);                             // model_type = BPE
        trainer.Varint(4, (ulong)tokens.Length);          // vocab_size
        trainer.Varint(24, 0);                            // treat_whitespace_as_suffix = false
        trainer.Varint(35, hasBytes ? 1UL : 0UL);         // byte_fallback
        trainer.Varint(40, (ulong)(long)unk);             // unk_id
        trainer.Varint(41, (ulong)(long)bos);             // bos_id
        trainer.Varint(42, (ulong)(long)eos);             // eos_id
        trainer.Varint(43, unchecked((ulong)(long)pad));  // pad_id (-1: none), sign-extended as protobuf int32 is
        trainer.String(44, " \u2047 ");                  // unk_surface, SentencePiece's default
        trainer.String(45, tokens[unk]);                  // unk_piece
        trainer.String(46, tokens[bos]);                  // bos_piece
        trainer.String(47, tokens[eos]);                  // eos_piece
        trainer.String(48, pad >= 0 ? tokens[pad] : "<pad>"); // pad_piece
        proto.Message(2, trainer);

        var normalizer = new ProtoWriter();
        normalizer.String(1, "identity");                 // name: no Unicode normalization
        normalizer.Varint(3, addDummyPrefix ? 1UL : 0UL); // add_dummy_prefix
        normalizer.Varint(4, removeExtraWhitespaces ? 1UL : 0UL);
        normalizer.Varint(5, 1);                          // escape_whitespaces
        proto.Message(3, normalizer);
        return proto.ToArray();
    }

    /// <summary>
    /// A byte-level BPE tokenizer (<c>tokenizer.ggml.model = "gpt2"</c>) as llama.cpp reads it: <c>tokens</c>,
    /// <c>token_type</c> (control and user-defined tokens are recognised in text, control ones are special;
    /// unused ones, such as the <c>[PAD…]</c> fillers of a padded vocabulary, only decode), <c>merges</c>
    /// (<c>"a b"</c>), the pre-tokenizer named by <c>tokenizer.ggml.pre</c> (with the normalizer that name implies), BOS/EOS and
    /// <c>add_bos_token</c> (default false), <c>clean_spaces</c> (default false).
    /// </summary>
    internal static ByteLevelBpeDefinition ReadByteLevelBpe(GgufMetadata metadata)
    {
        string source = metadata.Source;
        string[] tokens = metadata.GetStringArray("tokenizer.ggml.tokens")
            ?? throw new ModelFormatException($"{source}: the GGUF file has no tokenizer.ggml.tokens");
        string[] merges = metadata.GetStringArray("tokenizer.ggml.merges")
            ?? throw new ModelFormatException($"{source}: the byte-level BPE tokenizer has no tokenizer.ggml.merges");
        int[]? types = metadata.GetInt32Array("tokenizer.ggml.token_type");
        if (types is not null && types.Length != tokens.Length)
            throw new ModelFormatException($"{source}: tokenizer.ggml.token_type has {types.Length} values for {tokens.Length} tokens");
        string pre = metadata.GetString("tokenizer.ggml.pre")
            ?? throw new ModelFormatException($"{source}: the byte-level BPE tokenizer has no tokenizer.ggml.pre naming its pre-tokenizer");
        (string[] patterns, bool ignoreMerges, System.Text.NormalizationForm? normalization) = ByteLevelPreTokenizers.FromGgufName(source, pre);

        var vocabulary = new TokenTable(tokens.Length);
        var added = new System.Collections.Generic.List<ByteLevelAddedToken>();
        for (int id = 0; id < tokens.Length; id++)
        {
            int type = types?[id] ?? 1;
            if (type is 3 or 4)
                added.Add(new ByteLevelAddedToken(tokens[id], id, Special: type == 3));
            else if (type != 5 && !vocabulary.TryAdd(tokens[id], id, out int first))
                throw new ModelFormatException($"{source}: token \"{tokens[id]}\" appears twice (ids {first} and {id})");
        }
        var builder = new MergeTableBuilder(source, vocabulary, merges.Length);
        foreach (string merge in merges)
            builder.Add(merge);
        var (left, right, result, ranks) = builder.Build();
        int? bos = metadata.ContainsKey("tokenizer.ggml.bos_token_id") ? TokenId(metadata, "tokenizer.ggml.bos_token_id", 0, tokens.Length) : null;
        int? eos = metadata.ContainsKey("tokenizer.ggml.eos_token_id") ? TokenId(metadata, "tokenizer.ggml.eos_token_id", 0, tokens.Length) : null;
        return new ByteLevelBpeDefinition
        {
            Source = source,
            Tokens = tokens,
            Vocabulary = vocabulary,
            MergeLeft = left,
            MergeRight = right,
            MergeResults = result,
            MergeRanks = ranks,
            SplitPatterns = patterns,
            IgnoreMerges = ignoreMerges,
            Normalization = normalization,
            AddedTokens = added,
            BosId = bos,
            EosId = eos,
            AddBos = (metadata.GetBool("tokenizer.ggml.add_bos_token") ?? false) && bos is not null,
            CleanUpTokenizationSpaces = metadata.GetBool("tokenizer.ggml.clean_spaces") ?? false,
        };
    }

    private static int TokenId(GgufMetadata metadata, string key, int defaultId, int count)
    {
        long id = metadata.GetInteger(key) ?? defaultId;
        if (id < 0 || id >= count)
            throw new ModelFormatException($"{metadata.Source}: {key} is {id}, outside the vocabulary of {count} tokens");
        return (int)id;
    }

    /// <summary>The few protobuf encodings a ModelProto needs.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA1001:Types that own disposable fields should be disposable",
        Justification = "A MemoryStream holds no unmanaged resource: disposing it frees nothing.")]
    private sealed class ProtoWriter
    {
        private readonly MemoryStream _buffer = new();

        public void Clear() => _buffer.SetLength(0);

        public byte[] ToArray() => _buffer.ToArray();

        public void Varint(int field, ulong value)
        {
            Tag(field, 0);
            WriteVarint(value);
        }

        public void Float(int field, float value)
        {
            Tag(field, 5);
            Span<byte> bytes = stackalloc byte[4];
            System.Buffers.Binary.BinaryPrimitives.WriteSingleLittleEndian(bytes, value);
            _buffer.Write(bytes);
        }

        public void String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

        public void Message(int field, ProtoWriter message) =>
            Bytes(field, message._buffer.GetBuffer().AsSpan(0, (int)message._buffer.Length));

        private void Bytes(int field, ReadOnlySpan<byte> bytes)
        {
            Tag(field, 2);
            WriteVarint((ulong)bytes.Length);
            _buffer.Write(bytes);
        }

        private void Tag(int field, int wireType) => WriteVarint(((ulong)field << 3) | (uint)wireType);

        private void WriteVarint(ulong value)
        {
            while (value >= 0x80)
            {
                _buffer.WriteByte((byte)(value | 0x80));
                value >>= 7;
            }
            _buffer.WriteByte((byte)value);
        }
    }
}
