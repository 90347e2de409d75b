using System;
using System.IO;
using Microsoft.ML.Tokenizers;
using Xunit;
using Llama.Compiled.Tools;

namespace Llama.Compiled.Tests;

public class LlamaTokenizersTests
{
    [Fact]
    public void EncodesLikeLlama2c()
    {
        Tokenizer tokenizer = LlamaTokenizers.Load(TestPaths.Stories260KHf);

        Assert.Equal([1, 403, 407, 261, 378], tokenizer.EncodeToIds("Once upon a time"));
        Assert.Equal("Once upon a time", tokenizer.Decode([1, 403, 407, 261, 378]));
    }

    [Fact]
    public void AFilePathUsesTheTokenizerInItsFolder()
    {
        Tokenizer tokenizer = LlamaTokenizers.Load(Path.Combine(TestPaths.Stories260KHf, "model.safetensors"));

        Assert.Equal([1, 403, 407, 261, 378], tokenizer.EncodeToIds("Once upon a time"));
    }

    [Fact]
    public void MissingTokenizerNamesThePathLookedAt()
    {
        string folder = Path.Combine(Path.GetTempPath(), "llama-compiled-no-tokenizer-" + Guid.NewGuid().ToString("N"));
        string expected = Path.Combine(folder, "tokenizer.model");

        var fromFolder = Assert.Throws<FileNotFoundException>(() => LlamaTokenizers.Load(folder + Path.DirectorySeparatorChar));
        var fromFile = Assert.Throws<FileNotFoundException>(() => LlamaTokenizers.Load(Path.Combine(folder, "model.gguf")));

        Assert.Equal(expected, fromFolder.FileName);
        Assert.Contains(expected, fromFolder.Message);
        Assert.Equal(expected, fromFile.FileName);
    }

    [Fact]
    public void NotASentencePieceModelIsAFormatError()
    {
        string folder = Directory.CreateTempSubdirectory("llama-compiled-bad-tokenizer-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(folder, "tokenizer.model"), "this is not a protobuf");

            var e = Assert.Throws<ModelFormatException>(() => LlamaTokenizers.Load(folder));

            Assert.Contains(Path.Combine(folder, "tokenizer.model"), e.Message);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void KeepsSpacesAndSingleCharactersLikeLlama2cAndTheGgufVocabulary()
    {
        // tokenizer.model asks SentencePiece to collapse spaces; llama2.c and llama.cpp never do, and
        // Microsoft.ML.Tokenizers 2.0.1 would then encode "I" to nothing. Both tokenizers must agree.
        Tokenizer model = LlamaTokenizers.Load(TestPaths.Stories260KHf);
        Tokenizer gguf = LlamaTokenizers.Load(System.IO.Path.Combine(TestPaths.Stories260K, "stories260K-f32.gguf"));
        foreach (string text in new[] { "I", "a", "Once upon a time", "  two  spaces ", " leading", "trailing ", "line\nbreak" })
            Assert.Equal(gguf.EncodeToIds(text), model.EncodeToIds(text));
        Assert.Equal(2, model.EncodeToIds("I").Count);
    }
}
